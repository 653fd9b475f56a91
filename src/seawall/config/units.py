"""Friendly units in mesh.yaml: durations, percentages and byte sizes.

Each parser takes what YAML hands over (a number or a string) and returns a
plain Python number, or raises :class:`ValueError` whose message is written to
follow a config path (``"must be a duration such as ..."``).

* **Durations** are ``"25ms"``, ``"2s"``, ``"1.5s"``, ``"1m"``, ``"1h"``,
  ``"30d"``, a sum of those (``"1m30s"``), or a bare number of seconds. Units:
  ``us``, ``ms``, ``s``, ``m``, ``h``, ``d``. The result is float seconds,
  computed exactly and rounded once, so ``"25ms"`` is ``0.025`` and
  :func:`format_duration` round-trips every float.
* **Percentages** are ``"50%"``, ``"99.9%"`` or a bare number (``50``). A bare
  number is already a percentage: ``0.5`` means half a percent, not 50%.
* **Byte sizes** are a bare integer or ``"8KiB"``, ``"10MiB"``, ``"1GiB"``
  (powers of 1024), ``"64KB"``, ``"10MB"`` (powers of 1000) or ``"512B"``.

Booleans are never numbers here: ``true`` is not a duration of one second.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction

__all__ = ["format_duration", "parse_duration", "parse_percent", "parse_size"]

_DURATION_UNITS: dict[str, Fraction] = {
    "us": Fraction(1, 1_000_000),
    "ms": Fraction(1, 1_000),
    "s": Fraction(1),
    "m": Fraction(60),
    "h": Fraction(3_600),
    "d": Fraction(86_400),
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_DURATION = re.compile(rf"\s*([+-]?)\s*((?:{_NUMBER}\s*(?:us|ms|s|m|h|d)\s*)+|{_NUMBER})\s*")
_DURATION_PART = re.compile(rf"({_NUMBER})\s*(us|ms|s|m|h|d)")
_DURATION_HINT = "must be a duration such as '250ms', '2s', '1.5m' or '1h', or a number of seconds"

_PERCENT = re.compile(rf"\s*([+-]?{_NUMBER})\s*%\s*")
_PERCENT_HINT = "must be a percentage such as '50%' or '99.9%', or a number from 0 to 100"

_SIZE_UNITS: dict[str, int] = {
    "b": 1,
    "kb": 1_000,
    "mb": 1_000_000,
    "gb": 1_000_000_000,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
}
_SIZE = re.compile(rf"\s*({_NUMBER})\s*([kKmMgG]i?[bB]|[bB])\s*")
_SIZE_HINT = "must be a size in bytes such as 65536, '64KiB', '10MiB' or '1GB'"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_duration(value: object) -> float:
    """Seconds as a float, from a number of seconds or a string with units.

    >>> parse_duration("25ms"), parse_duration("1m30s"), parse_duration(2)
    (0.025, 90.0, 2.0)

    Raises :class:`ValueError` for anything else, for NaN and infinity, and for
    values beyond what a float holds. The sign is kept (``"-1s"`` is ``-1.0``)
    so that range checks can name the value the user wrote.
    """
    if _is_number(value):
        seconds = float(value)  # type: ignore[arg-type]
        if not math.isfinite(seconds):
            raise ValueError("must be a finite duration")
        return seconds
    if not isinstance(value, str):
        raise ValueError(_DURATION_HINT)
    whole = _DURATION.fullmatch(value)
    if whole is None:
        raise ValueError(_DURATION_HINT)
    sign, body = whole.groups()
    parts = _DURATION_PART.findall(body)
    total = (
        sum((Fraction(number) * _DURATION_UNITS[unit] for number, unit in parts), Fraction(0))
        if parts
        else Fraction(body.strip())
    )
    try:
        seconds = float(total)
    except OverflowError:
        raise ValueError("must be a finite duration") from None
    return -seconds if sign == "-" else seconds


def format_duration(seconds: float) -> str:
    """The shortest friendly spelling of ``seconds`` that parses back exactly.

    >>> format_duration(0.025), format_duration(90.0), format_duration(7200.0)
    ('25ms', '90s', '2h')

    ``parse_duration(format_duration(x)) == x`` for every finite float ``x >= 0``.
    """
    if not _is_number(seconds) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"format_duration: need a finite number >= 0, got {seconds!r}")
    exact = Decimal(repr(float(seconds)))  # the shortest decimal that round-trips
    value = Fraction(exact)
    if value == 0:
        return "0s"
    for unit in ("d", "h", "m"):
        factor = _DURATION_UNITS[unit]
        if value >= factor and value % factor == 0:
            return f"{value // factor}{unit}"
    if value >= 1:
        return f"{_plain(exact)}s"
    if value >= Fraction(1, 1_000):
        return f"{_plain(exact.scaleb(3))}ms"
    return f"{_plain(exact.scaleb(6))}us"


def _plain(number: Decimal) -> str:
    """A decimal without exponent or trailing zeros: ``Decimal('2.50E+1')`` → ``'25'``."""
    text = format(number.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def parse_percent(value: object) -> float:
    """A percentage as a float, from ``"50%"`` or a bare number.

    >>> parse_percent("99.9%"), parse_percent(50)
    (99.9, 50.0)

    The range is the caller's to check (most fields want ``[0, 100]``).
    """
    if _is_number(value):
        percent = float(value)  # type: ignore[arg-type]
    elif isinstance(value, str) and (match := _PERCENT.fullmatch(value)):
        percent = float(match.group(1))
    else:
        raise ValueError(_PERCENT_HINT)
    if not math.isfinite(percent):
        raise ValueError("must be a finite percentage")
    return percent


def parse_size(value: object) -> int:
    """A size in bytes, from an integer or a string with a unit.

    >>> parse_size("8KiB"), parse_size("10MB"), parse_size(512)
    (8192, 10000000, 512)

    A fractional result (``"1.5B"``) is refused: sizes are whole bytes.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str) or (match := _SIZE.fullmatch(value)) is None:
        raise ValueError(_SIZE_HINT)
    number, unit = match.groups()
    size = Fraction(number) * _SIZE_UNITS[unit.lower()]
    if size.denominator != 1:
        raise ValueError("must be a whole number of bytes")
    return int(size)
