"""Route matching and the per-request traffic decisions: split, mirror, fault.

A destination's routes are compiled once into a :class:`RouteTable`; each
request is matched with :meth:`RouteTable.match` (method, path and headers as
the codec gives them, in bytes). The first route that matches, in config
order, wins; no match returns ``None``.

Matching rules (Envoy's, unless said otherwise):

* **Path.** At most one of ``path_prefix`` (the raw request path starts with
  it: ``/api`` matches ``/api``, ``/api/x`` and also ``/apix``, so write
  ``/api/`` to match a segment), ``path_exact`` (the path without its query
  string equals it) and ``path_regex`` (the path without its query string
  fully matches it). None matches any path. The path is matched as it
  arrived, case-sensitive and not normalised (no percent-decoding, no
  ``..`` removal): normalising is the codec's job, before routing.
* **Methods.** The request method is one of ``methods`` (upper-cased in the
  config; methods are case-sensitive on the wire). Empty means any method.
* **Headers.** Every :class:`HeaderMatch` holds: the header is present
  (``present=True``) or absent (``present=False``), equals ``exact``, or
  fully matches ``regex``. Names are case-insensitive. A header sent several
  times is matched on its values joined with ``,``, as Envoy does.
* Regexes are Python :mod:`re` patterns compiled once, on bytes (the pattern
  is encoded as UTF-8), and must match the whole value (``fullmatch``).

The per-request decisions live on a :class:`Decider`, given the
:class:`random.Random` to draw from:

* :meth:`Decider.choose_subset` — a subset of a :class:`WeightedSplit`,
  with probability proportional to its weight.
* :meth:`Decider.should_mirror` — whether this request is copied to the
  mirror, ``percent`` of the time.
* :meth:`Decider.fault` — whether to delay and/or abort this request, from the
  route's :class:`FaultSpec` and, when the route allows it, the request's
  ``x-seawall-fault-delay-ms`` and ``x-seawall-fault-abort`` headers.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Generic, TypeAlias, TypeVar

from ..policy._validate import require_number

__all__ = [
    "FAULT_ABORT_HEADER",
    "FAULT_DELAY_HEADER",
    "Decider",
    "FaultDecision",
    "FaultSpec",
    "HeaderMatch",
    "Headers",
    "MirrorSpec",
    "Route",
    "RouteMatch",
    "RouteTable",
    "WeightedSplit",
    "shadow_host",
]

T = TypeVar("T")

Headers: TypeAlias = Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]]
"""Request headers: ``(name, value)`` pairs as received (any case, repeats
allowed), or a mapping whose names are already lower-case and whose repeated
values are already joined with ``,``."""

FAULT_DELAY_HEADER = b"x-seawall-fault-delay-ms"
"""Request header asking for an injected delay, in whole milliseconds."""

FAULT_ABORT_HEADER = b"x-seawall-fault-abort"
"""Request header asking for an injected abort with the given status."""

_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS = frozenset(b"0123456789")


def _is_token(value: object) -> bool:
    return isinstance(value, str) and bool(value) and all(c in _TCHAR for c in value)


def _compile(owner: str, name: str, pattern: object) -> re.Pattern[bytes]:
    if not isinstance(pattern, str):
        raise ValueError(f"{owner}: {name} must be a str, got {pattern!r}")
    try:
        return re.compile(pattern.encode("utf-8"))
    except re.error as exc:
        raise ValueError(
            f"{owner}: {name} must be a valid regular expression, got {pattern!r} ({exc})"
        ) from None



# ---------------------------------------------------------------------- route specs


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    """A condition on one request header; exactly one of ``exact``, ``regex``, ``present``.

    Attributes:
        name: the header name (case-insensitive; stored lower-case).
        exact: the value must equal this.
        regex: the value must fully match this regular expression.
        present: ``True``: the header must be present (any value);
            ``False``: it must be absent.
    """

    name: str
    exact: str | None = None
    regex: str | None = None
    present: bool | None = None

    def __post_init__(self) -> None:
        if not _is_token(self.name):
            raise ValueError(f"HeaderMatch: name must be a header field name, got {self.name!r}")
        object.__setattr__(self, "name", self.name.lower())
        given = [k for k in ("exact", "regex", "present") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "HeaderMatch: exactly one of exact, regex, present must be given, "
                f"got {given or 'none'} for {self.name!r}"
            )
        if self.exact is not None and not isinstance(self.exact, str):
            raise ValueError(f"HeaderMatch: exact must be a str, got {self.exact!r}")
        if self.regex is not None:
            _compile("HeaderMatch", "regex", self.regex)
        if self.present is not None and not isinstance(self.present, bool):
            raise ValueError(f"HeaderMatch: present must be a bool, got {self.present!r}")


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """The conditions a request must meet for a route to apply (all of them).

    Attributes:
        path_prefix: the raw path starts with this (it starts with ``/``).
        path_exact: the path without its query equals this.
        path_regex: the path without its query fully matches this regex.
        methods: the method is one of these (upper-cased); empty for any.
        headers: every one of these holds.
    """

    path_prefix: str | None = None
    path_exact: str | None = None
    path_regex: str | None = None
    methods: frozenset[str] = frozenset()
    headers: tuple[HeaderMatch, ...] = ()

    def __post_init__(self) -> None:
        paths = [
            k for k in ("path_prefix", "path_exact", "path_regex") if getattr(self, k) is not None
        ]
        if len(paths) > 1:
            raise ValueError(f"RouteMatch: at most one path matcher may be given, got {paths}")
        for name in ("path_prefix", "path_exact"):
            value = getattr(self, name)
            if value is None:
                continue
            if (
                not isinstance(value, str)
                or not value.startswith("/")
                or any(c in value for c in "?# ")
                or not value.isprintable()
                or not value.isascii()
            ):
                raise ValueError(
                    f"RouteMatch: {name} must be an ASCII path starting with '/' "
                    f"(no spaces, '?' or '#'), got {value!r}"
                )
        if self.path_regex is not None:
            _compile("RouteMatch", "path_regex", self.path_regex)
        methods = self.methods
        if isinstance(methods, str) or not isinstance(methods, Iterable):
            raise ValueError(f"RouteMatch: methods must be a set of method names, got {methods!r}")
        methods = frozenset(methods)
        for method in methods:
            if not _is_token(method):
                raise ValueError(f"RouteMatch: methods must be method names, got {method!r}")
        object.__setattr__(self, "methods", frozenset(m.upper() for m in methods))
        headers = self.headers
        if not isinstance(headers, Iterable) or not all(
            isinstance(h, HeaderMatch) for h in headers
        ):
            raise ValueError(f"RouteMatch: headers must be HeaderMatch objects, got {headers!r}")
        object.__setattr__(self, "headers", tuple(headers))


@dataclass(frozen=True, slots=True)
class WeightedSplit:
    """Traffic split across subsets (versions), proportional to the weights.

    Weights need not add up to 100; a weight of 0 sends nothing to that subset.
    Build one from a mapping with :meth:`of`.

    Attributes:
        weights: ``(subset, weight)`` pairs; names unique and non-empty,
            weights finite and >= 0, at least one > 0.
    """

    weights: tuple[tuple[str, float], ...]
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _cumulative: tuple[float, ...] = field(init=False, repr=False, compare=False)

    @classmethod
    def of(cls, weights: Mapping[str, float]) -> WeightedSplit:
        """A split from a ``{subset: weight}`` mapping, e.g. ``{"v1": 90, "v2": 10}``."""
        if not isinstance(weights, Mapping):
            raise ValueError(f"WeightedSplit: weights must be a mapping, got {weights!r}")
        return cls(tuple(weights.items()))

    def __post_init__(self) -> None:
        pairs = self.weights
        if not isinstance(pairs, tuple) or not pairs:
            raise ValueError(f"WeightedSplit: weights must be a non-empty tuple, got {pairs!r}")
        names: list[str] = []
        cumulative: list[float] = []
        total = 0.0
        for pair in pairs:
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise ValueError(
                    f"WeightedSplit: weights must be (subset, weight) pairs, got {pair!r}"
                )
            name, weight = pair
            if not isinstance(name, str) or not name:
                raise ValueError(f"WeightedSplit: subset must be a non-empty str, got {name!r}")
            if name in names:
                raise ValueError(f"WeightedSplit: subsets must be unique, got {name!r} twice")
            if (
                isinstance(weight, bool)
                or not isinstance(weight, int | float)
                or not math.isfinite(weight)
                or weight < 0
            ):
                raise ValueError(
                    f"WeightedSplit: weight of {name!r} must be a finite number >= 0, "
                    f"got {weight!r}"
                )
            total += weight
            names.append(name)
            cumulative.append(total)
        if total <= 0:
            raise ValueError(f"WeightedSplit: at least one weight must be > 0, got {pairs!r}")
        object.__setattr__(self, "_names", tuple(names))
        object.__setattr__(self, "_cumulative", tuple(cumulative))

    @property
    def total(self) -> float:
        """The sum of the weights."""
        return self._cumulative[-1]


@dataclass(frozen=True, slots=True)
class MirrorSpec:
    """Copy a share of the route's requests to another destination (fire-and-forget).

    Attributes:
        destination: the destination service that receives the copies.
        percent: share of requests copied, 0..100 (default 100).
    """

    destination: str
    percent: float = 100.0

    def __post_init__(self) -> None:
        if not isinstance(self.destination, str) or not self.destination:
            raise ValueError(
                f"MirrorSpec: destination must be a non-empty str, got {self.destination!r}"
            )
        require_number("MirrorSpec", "percent", self.percent, ge=0, le=100)


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """Faults injected into a route's requests (chaos testing).

    A delay and an abort are drawn independently; when both happen the delay
    comes first, then the abort (as in Envoy).

    Attributes:
        delay: seconds to hold the request before forwarding it (>= 0).
        delay_percent: share of requests delayed, 0..100.
        abort_status: status answered instead of forwarding (200..599).
        abort_percent: share of requests aborted, 0..100.
        header_faults: honour the ``x-seawall-fault-delay-ms`` and
            ``x-seawall-fault-abort`` request headers (default false: any
            client could otherwise slow the service down).
        max_header_delay: cap on a header-requested delay, in seconds (>= 0).
    """

    delay: float = 0.0
    delay_percent: float = 0.0
    abort_status: int = 503
    abort_percent: float = 0.0
    header_faults: bool = False
    max_header_delay: float = 60.0

    def __post_init__(self) -> None:
        for name in ("delay", "max_header_delay"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(
                    f"FaultSpec: {name} must be a finite number of seconds >= 0, got {value!r}"
                )
        require_number("FaultSpec", "delay_percent", self.delay_percent, ge=0, le=100)
        require_number("FaultSpec", "abort_percent", self.abort_percent, ge=0, le=100)
        status = self.abort_status
        if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
            raise ValueError(f"FaultSpec: abort_status must be an int in 200..599, got {status!r}")
        if not isinstance(self.header_faults, bool):
            raise ValueError(f"FaultSpec: header_faults must be a bool, got {self.header_faults!r}")


@dataclass(frozen=True, slots=True, eq=False)
class Route(Generic[T]):
    """One route of a destination: when it applies, and what it carries.

    Routes compare by identity (their place in the config is what matters),
    so they can key dicts cheaply.

    Attributes:
        match: when the route applies.
        data: what the proxy attaches to the route (its policies, pipeline...).
        name: the route's name, for metrics and logs.
        split: traffic split across subsets, or ``None`` (any endpoint).
        mirror: request shadowing, or ``None``.
        fault: fault injection, or ``None``.
    """

    match: RouteMatch
    data: T
    _: KW_ONLY
    name: str = ""
    split: WeightedSplit | None = None
    mirror: MirrorSpec | None = None
    fault: FaultSpec | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.match, RouteMatch):
            raise ValueError(f"Route: match must be a RouteMatch, got {self.match!r}")
        if not isinstance(self.name, str):
            raise ValueError(f"Route: name must be a str, got {self.name!r}")
        optional: tuple[tuple[str, object, type], ...] = (
            ("split", self.split, WeightedSplit),
            ("mirror", self.mirror, MirrorSpec),
            ("fault", self.fault, FaultSpec),
        )
        for name, value, kind in optional:
            if value is not None and not isinstance(value, kind):
                raise ValueError(f"Route: {name} must be a {kind.__name__} or None, got {value!r}")


# ---------------------------------------------------------------------- the table


_HeaderCondition: TypeAlias = tuple[bytes, bytes | None, re.Pattern[bytes] | None, bool | None]


class _Compiled(Generic[T]):
    """A route compiled for matching (private)."""

    __slots__ = ("exact", "headers", "methods", "prefix", "regex", "route")

    def __init__(self, route: Route[T]) -> None:
        spec = route.match
        self.route = route
        self.prefix = None if spec.path_prefix is None else spec.path_prefix.encode("ascii")
        # A prefix of "/" matches every origin-form path: skip the check.
        if self.prefix == b"/":
            self.prefix = None
        self.exact = None if spec.path_exact is None else spec.path_exact.encode("ascii")
        self.regex = None if spec.path_regex is None else re.compile(spec.path_regex.encode())
        self.methods = frozenset(m.encode("ascii") for m in spec.methods) or None
        self.headers: tuple[_HeaderCondition, ...] = tuple(
            (
                h.name.encode("ascii"),
                None if h.exact is None else h.exact.encode("utf-8"),
                None if h.regex is None else re.compile(h.regex.encode("utf-8")),
                h.present,
            )
            for h in spec.headers
        )


def _header_map(headers: Headers) -> Mapping[bytes, bytes]:
    if type(headers) is dict or isinstance(headers, Mapping):
        return headers
    out: dict[bytes, bytes] = {}
    for name, value in headers:
        key = name.lower()
        old = out.get(key)
        out[key] = value if old is None else old + b"," + value
    return out


class RouteTable(Generic[T]):
    """A destination's routes, compiled once; :meth:`match` finds a request's route.

    Args:
        routes: the routes in config order (first match wins).
    """

    __slots__ = ("_compiled", "routes")

    def __init__(self, routes: Sequence[Route[T]]) -> None:
        for route in routes:
            if not isinstance(route, Route):
                raise ValueError(f"RouteTable: routes must be Route objects, got {route!r}")
        self.routes: tuple[Route[T], ...] = tuple(routes)
        """The routes, in match order."""
        self._compiled: tuple[_Compiled[T], ...] = tuple(_Compiled(r) for r in self.routes)

    def match(self, method: bytes, path: bytes, headers: Headers = ()) -> Route[T] | None:
        """The first route matching the request, or ``None``.

        Args:
            method: the request method, e.g. ``b"GET"``.
            path: the request target in origin form, e.g. ``b"/a/b?x=1"``
                (the codec turns an absolute-form target into this).
            headers: the request headers (see :data:`Headers`); only read
                when a route has header conditions.
        """
        bare: bytes | None = None
        lookup: Mapping[bytes, bytes] | None = None
        for c in self._compiled:
            if c.methods is not None and method not in c.methods:
                continue
            if c.prefix is not None:
                if not path.startswith(c.prefix):
                    continue
            elif c.exact is not None or c.regex is not None:
                if bare is None:
                    cut = path.find(b"?")
                    bare = path if cut < 0 else path[:cut]
                if c.exact is not None:
                    if bare != c.exact:
                        continue
                elif c.regex is not None and c.regex.fullmatch(bare) is None:
                    continue
            if c.headers:
                if lookup is None:
                    lookup = _header_map(headers)
                if not _headers_match(c.headers, lookup):
                    continue
            return c.route
        return None


def _headers_match(conditions: tuple[_HeaderCondition, ...], lookup: Mapping[bytes, bytes]) -> bool:
    for name, exact, regex, present in conditions:
        value = lookup.get(name)
        if present is not None:
            if (value is not None) is not present:
                return False
        elif value is None:
            return False
        elif exact is not None:
            if value != exact:
                return False
        elif regex is not None and regex.fullmatch(value) is None:
            return False
    return True


# ---------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """The faults to inject into one request.

    Attributes:
        delay: seconds to wait before forwarding (0.0 for none).
        abort_status: the status to answer instead of forwarding, or ``None``.
    """

    delay: float = 0.0
    abort_status: int | None = None


def _parse_delay_ms(value: bytes | None) -> int | None:
    """Strictly parse a delay header: 1 to 9 ASCII digits, nothing else."""
    if value is None or not 0 < len(value) <= 9 or not _DIGITS.issuperset(value):
        return None
    return int(value)


def _parse_status(value: bytes | None) -> int | None:
    """Strictly parse an abort header: exactly 3 ASCII digits, 200..599."""
    if value is None or len(value) != 3 or not _DIGITS.issuperset(value):
        return None
    status = int(value)
    return status if 200 <= status <= 599 else None


class Decider:
    """The per-request random decisions (split, mirror, fault), drawn from an injected rng.

    Args:
        rng: the source of randomness; default a new :class:`random.Random`.
            Tests pass a seeded one. Not thread-safe (one per worker).
    """

    __slots__ = ("_random",)

    def __init__(self, rng: random.Random | None = None) -> None:
        self._random = (rng if rng is not None else random.Random()).random

    def choose_subset(self, split: WeightedSplit) -> str:
        """A subset of ``split``, with probability proportional to its weight."""
        cumulative = split._cumulative
        # random() < 1, so point < total: some bound is above it, and a bound
        # equal to the previous one (a zero weight) is never the first above it.
        point = self._random() * cumulative[-1]
        index = 0
        while point >= cumulative[index]:
            index += 1
        return split._names[index]

    def should_mirror(self, percent: float) -> bool:
        """Whether to mirror this request, ``percent`` (0..100) of the time."""
        return self.chance(percent)

    def chance(self, percent: float) -> bool:
        """True ``percent`` (0..100) of the time; 0 and 100 draw nothing."""
        if percent <= 0:
            return False
        if percent >= 100:
            return True
        return self._random() * 100.0 < percent

    def fault(self, spec: FaultSpec | None, headers: Headers = ()) -> FaultDecision | None:
        """The faults to inject into this request, or ``None`` for none.

        The configured delay and abort are each drawn with their percentage.
        When ``spec.header_faults`` is true, a request header overrides the
        configured fault of its kind, for this request, every time:

        * ``x-seawall-fault-delay-ms: <ms>`` — 1 to 9 ASCII digits, capped
          at ``max_header_delay``;
        * ``x-seawall-fault-abort: <status>`` — exactly 3 ASCII digits,
          200..599.

        A header with any other value (signs, spaces, decimals, empty, out of
        range) is ignored, as if absent, and the configured fault applies.
        """
        if spec is None:
            return None
        delay = 0.0
        abort: int | None = None
        header_delay: int | None = None
        header_abort: int | None = None
        if spec.header_faults:
            lookup = _header_map(headers)
            header_delay = _parse_delay_ms(lookup.get(FAULT_DELAY_HEADER))
            header_abort = _parse_status(lookup.get(FAULT_ABORT_HEADER))
        if header_delay is not None:
            delay = min(header_delay / 1000.0, spec.max_header_delay)
        elif spec.delay > 0 and self.chance(spec.delay_percent):
            delay = spec.delay
        if header_abort is not None:
            abort = header_abort
        elif self.chance(spec.abort_percent):
            abort = spec.abort_status
        if delay <= 0 and abort is None:
            return None
        return FaultDecision(delay, abort)


def shadow_host(host: bytes) -> bytes:
    """The Host of a mirrored copy: ``-shadow`` appended to the host name, before any port.

    ``orders`` → ``orders-shadow``; ``orders:8002`` → ``orders-shadow:8002``;
    ``[::1]:80`` → ``[::1]-shadow:80`` (as Envoy does).
    """
    close = host.rfind(b"]")
    colon = host.rfind(b":")
    if colon > close and (close >= 0 or host.count(b":") == 1):
        return host[:colon] + b"-shadow" + host[colon:]
    return host + b"-shadow"
