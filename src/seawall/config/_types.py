"""Field types for the mesh model: units, names, ports, HTTP tokens.

Each is an ``Annotated`` type whose validator raises :func:`invalid`, so the
error message is ours (short, path-friendly) and not pydantic's default text.
Integers and booleans are strict: ``3.0``, ``"3"`` and ``true`` are not a
count of 3, because in a config file such a value is nearly always a mistake.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import urllib.parse
from collections.abc import Callable
from typing import Annotated, NoReturn

from annotated_types import Ge, Le
from pydantic import AllowInfNan, BeforeValidator, Strict
from pydantic_core import PydanticCustomError

from .units import format_duration, parse_duration, parse_percent, parse_size

ERROR_TYPE = "seawall"


def invalid(message: str, got: str | None = None) -> NoReturn:
    """Fail validation with ``message``; ``got`` replaces the shown value when given.

    The message travels in the context, not as the template, so braces in it
    (a regex error, say) are never taken for placeholders.
    """
    context = {"message": message} if got is None else {"message": message, "got": got}
    raise PydanticCustomError(ERROR_TYPE, "{message}", context)


def _bound(limit: float, show: Callable[[float], str]) -> str:
    return "0" if limit == 0 else show(limit)


def _check_range(
    value: float,
    show: Callable[[float], str],
    *,
    gt: float | None,
    ge: float | None,
    lt: float | None,
    le: float | None,
) -> None:
    if gt is not None and not value > gt:
        invalid(f"must be > {_bound(gt, show)}")
    if ge is not None and not value >= ge:
        invalid(f"must be >= {_bound(ge, show)}")
    if lt is not None and not value < lt:
        invalid(f"must be < {_bound(lt, show)}")
    if le is not None and not value <= le:
        invalid(f"must be <= {_bound(le, show)}")


def seconds(
    *,
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
) -> Callable[[object], float]:
    """A validator of durations (see :func:`~seawall.config.units.parse_duration`)."""

    def validate(value: object) -> float:
        try:
            parsed = parse_duration(value)
        except ValueError as exc:
            invalid(str(exc))
        _check_range(parsed, format_duration, gt=gt, ge=ge, lt=None, le=le)
        return parsed

    return validate


def percent(
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> Callable[[object], float]:
    """A validator of percentages (see :func:`~seawall.config.units.parse_percent`)."""

    def validate(value: object) -> float:
        try:
            parsed = parse_percent(value)
        except ValueError as exc:
            invalid(str(exc))
        _check_range(parsed, lambda p: f"{p:g}%", gt=gt, ge=ge, lt=lt, le=le)
        return parsed

    return validate


def size(*, ge: int) -> Callable[[object], int]:
    """A validator of byte sizes (see :func:`~seawall.config.units.parse_size`)."""

    def validate(value: object) -> int:
        try:
            parsed = parse_size(value)
        except ValueError as exc:
            invalid(str(exc))
        _check_range(parsed, lambda n: str(int(n)), gt=None, ge=ge, lt=None, le=None)
        return parsed

    return validate


# -- durations (float seconds) --
Duration = Annotated[float, BeforeValidator(seconds(ge=0))]
PositiveDuration = Annotated[float, BeforeValidator(seconds(gt=0))]

# -- percentages (float, 0 to 100) --
Percent = Annotated[float, BeforeValidator(percent(ge=0, le=100))]
Rate = Annotated[float, BeforeValidator(percent(gt=0, le=100))]
"""A threshold rate: a rate of 0% would trip on nothing, or on everything."""
Objective = Annotated[float, BeforeValidator(percent(gt=0, lt=100))]
"""An SLO target: 100% leaves no error budget to spend."""

# -- sizes (int bytes) --
ByteSize = Annotated[int, BeforeValidator(size(ge=1))]
ByteSizeOrZero = Annotated[int, BeforeValidator(size(ge=0))]

# -- numbers --
Count = Annotated[int, Strict(), Ge(1), Le(1_000_000)]
CountOrZero = Annotated[int, Strict(), Ge(0), Le(1_000_000)]
Port = Annotated[int, Strict(), Ge(1), Le(65_535)]
Number = Annotated[float, Strict(), AllowInfNan(False)]

# -- names --
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]{1,255}")
_ROUTE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 section 5.6.2
_METHOD = re.compile(r"[A-Z][A-Z0-9_-]{0,31}")
_HOST = re.compile(
    r"(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)

LABEL_RULE = "lower-case letters, digits and '-', at most 63 characters"


def is_name(value: object) -> bool:
    """Whether ``value`` is a valid mesh, service or subset name (a DNS label)."""
    return isinstance(value, str) and _LABEL.fullmatch(value) is not None


def _string(value: object) -> str:
    if not isinstance(value, str):
        invalid("must be a string")
    return value


def _name(value: object) -> str:
    if not is_name(_string(value)):
        invalid(f"must be a name of {LABEL_RULE}")
    return str(value)


def _trust_domain(value: object) -> str:
    if _TRUST_DOMAIN.fullmatch(_string(value)) is None:
        invalid("must be a trust domain of lower-case letters, digits, '.', '-' and '_'")
    return str(value)


def _route_name(value: object) -> str:
    if _ROUTE_NAME.fullmatch(_string(value)) is None:
        invalid("must be 1 to 128 letters, digits, '_', '.', ':' or '-'")
    return str(value)


def _route_key(value: object) -> str:
    """``service`` or ``service/route``: what a tail-sampling threshold applies to."""
    text = _string(value)
    service, _, route = text.partition("/")
    if not is_name(service) or ("/" in text and _ROUTE_NAME.fullmatch(route) is None):
        invalid("must be 'service' or 'service/route'")
    return text


def _http_url(value: object) -> str:
    """An ``http://`` URL with a host (an OTLP endpoint the sidecars post to)."""
    text = _string(value)
    parts = urllib.parse.urlsplit(text)
    if parts.scheme == "https":
        invalid(
            "https:// is not supported: the sidecars export over plain HTTP (run an "
            "OpenTelemetry Collector beside the mesh to forward over TLS)"
        )
    if parts.scheme != "http" or not parts.hostname:
        invalid("must be an http:// URL with a host")
    try:
        parts.port  # noqa: B018 - raises on a port that is not one
    except ValueError:
        invalid("has a port that is not a number from 1 to 65535")
    return text


def _host(value: object) -> str:
    text = _string(value)
    try:
        ipaddress.ip_address(text)
    except ValueError:
        if _HOST.fullmatch(text) is None:
            invalid("must be an IP address or a host name")
    return text


def _method(value: object) -> str:
    if _METHOD.fullmatch(_string(value)) is None:
        invalid("must be an HTTP method in upper case, such as 'GET' or 'POST'")
    return str(value)


def _header_name(value: object) -> str:
    if _TOKEN.fullmatch(_string(value)) is None:
        invalid("must be an HTTP header name")
    return str(value).lower()


def _upgrade(value: object) -> str:
    """A protocol an Upgrade request may switch to (RFC 9110 §7.8: name[/version])."""
    text = _string(value)
    name, _, version = text.partition("/")
    if _TOKEN.fullmatch(name) is None or (version and _TOKEN.fullmatch(version) is None):
        invalid("must be a protocol name such as 'websocket' (a token, optionally '/version')")
    if name.lower() == "h2c":
        invalid("h2c is never tunnelled (it would carry requests past the sidecar unparsed)")
    return text.lower()


def _path(value: object) -> str:
    text = _string(value)
    if not text.startswith("/"):
        invalid("must start with '/'")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        invalid("must not contain spaces or control characters")
    return text


def _regex(value: object) -> str:
    try:
        re.compile(_string(value))
    except re.error as exc:
        invalid(f"invalid regular expression: {exc}")
    # The sidecar's core runs routes in Rust: a pattern it cannot run with the same
    # meaning (lookarounds, backreferences, possessive quantifiers...) is refused here.
    try:
        from .. import _native  # noqa: PLC0415 - the extension is optional for the model
    except ImportError:
        return str(value)
    try:
        _native.check_regex(str(value))
    except ValueError as exc:
        invalid(f"not supported by the sidecar: {exc}")
    return str(value)


def _command(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            invalid(f"invalid command line: {exc}")
    elif isinstance(value, list | tuple) and all(isinstance(arg, str) for arg in value):
        argv = list(value)
    else:
        invalid("must be a command line or a list of arguments")
    if not argv:
        invalid("must not be empty")
    return tuple(argv)


RETRY_CONDITIONS = ("5xx", "gateway-error", "reset", "connect-failure")


def _retry_condition(value: object) -> str | int:
    if isinstance(value, str) and value in RETRY_CONDITIONS:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
        return value
    invalid(
        "must be '5xx', 'gateway-error', 'reset', 'connect-failure' "
        "or a status code from 400 to 599"
    )


Name = Annotated[str, BeforeValidator(_name)]
TrustDomain = Annotated[str, BeforeValidator(_trust_domain)]
RouteName = Annotated[str, BeforeValidator(_route_name)]
Host = Annotated[str, BeforeValidator(_host)]
RouteKey = Annotated[str, BeforeValidator(_route_key)]
HttpUrl = Annotated[str, BeforeValidator(_http_url)]
Method = Annotated[str, BeforeValidator(_method)]
HeaderName = Annotated[str, BeforeValidator(_header_name)]
UpgradeProtocol = Annotated[str, BeforeValidator(_upgrade)]
UrlPath = Annotated[str, BeforeValidator(_path)]
Regex = Annotated[str, BeforeValidator(_regex)]
Command = Annotated[tuple[str, ...], BeforeValidator(_command)]
RetryCondition = Annotated[str | int, BeforeValidator(_retry_condition)]
Text = Annotated[str, Strict()]
Flag = Annotated[bool, Strict()]
