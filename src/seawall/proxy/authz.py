"""Inbound authorization: may this caller make this request to this service?

Sans-I/O: an :class:`Authorizer` is compiled once per config from the
service's ``authorization`` section (and its ``mtls`` mode), and
:meth:`Authorizer.decide` is a pure function of the caller, the method and
the path. The forwarder asks it after the caller's identity is known (from its
certificate) and before the app is called; a denied request gets a 403 and
never reaches the app.

Order (as in Envoy's and Istio's RBAC): deny rules first, then allow rules,
then the default. Within a rule every condition given must hold:

* ``from``: the calling service (``None`` when the caller is not
  authenticated, i.e. plaintext); ``"*"`` matches any authenticated caller;
  an omitted ``from`` matches anyone, unauthenticated callers included;
* ``methods``: the request method, exactly;
* ``paths``: exact paths, or prefixes written with a trailing ``*``.

Paths are compared in a canonical form, so an encoding cannot slip past a
rule: the query is dropped, ``%2F`` (and ``%5C``) count as ``/``, repeated
slashes as one, and dot segments are resolved. The listener has already
decoded unreserved characters and removed plain dot segments
(:func:`~seawall.proxy.http1.normalize_path`).

With ``mtls: strict`` a request from an unauthenticated caller is denied
whatever the rules say (rule ``mtls``): the listener refuses plaintext
connections already, so this only happens to a connection accepted before a
reload turned the service strict.

>>> from seawall.config.model import AuthorizationConfig
>>> authz = Authorizer.from_config(AuthorizationConfig.model_validate({
...     "default": "deny",
...     "rules": [{"action": "allow", "from": ["orders"], "paths": ["/charge", "/refunds/*"]}],
... }))
>>> authz.decide("orders", b"POST", b"/refunds/7?full=1")
Decision(allowed=True, rule='rules[0]')
>>> authz.decide("email", b"POST", b"/charge")
Decision(allowed=False, rule='default')
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config.model import AuthorizationConfig, AuthorizationRule

__all__ = ["Authorizer", "Decision", "Rule", "canonical_path"]


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on a request, and the rule that gave it (``rules[2]``, ``default``, ``mtls``)."""

    allowed: bool
    rule: str


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule; ``None`` for a condition that matches anything."""

    name: str  # "rules[<index>]": its place in the config, shown in metrics
    allow: bool
    callers: frozenset[str] | None  # service names; None: anyone
    any_authenticated: bool  # from: ["*"]
    methods: frozenset[bytes] | None
    exact: frozenset[str] | None  # paths: exact ones (None with prefixes: no path matches)
    prefixes: tuple[str, ...]  # paths: prefixes (from "/x/*")

    @property
    def has_paths(self) -> bool:
        """Whether the rule looks at the path at all."""
        return self.exact is not None or bool(self.prefixes)

    def matches(self, caller: str | None, method: bytes, path: str) -> bool:
        """Whether every condition of the rule holds for this request."""
        if self.any_authenticated:
            if caller is None:
                return False
        elif self.callers is not None and caller not in self.callers:
            return False
        if self.methods is not None and method not in self.methods:
            return False
        if not self.has_paths:
            return True
        if self.exact is not None and path in self.exact:
            return True
        return path.startswith(self.prefixes) if self.prefixes else False


def _compile(index: int, rule: AuthorizationRule) -> Rule:
    callers = rule.from_
    exact: set[str] = set()
    prefixes: list[str] = []
    for path in rule.paths or ():
        if path.endswith("*"):
            prefixes.append(path[:-1])
        else:
            exact.add(path)
    return Rule(
        name=f"rules[{index}]",
        allow=rule.action == "allow",
        callers=None if callers is None or callers == ("*",) else frozenset(callers),
        any_authenticated=callers == ("*",),
        methods=None if rule.methods is None else frozenset(m.encode() for m in rule.methods),
        exact=frozenset(exact) if exact else None,
        prefixes=tuple(prefixes),
    )


class Authorizer:
    """A service's compiled inbound rules: :meth:`decide` says allowed or not, and why."""

    __slots__ = ("_allows", "_denies", "_paths", "default_allow", "require_peer", "rules")

    def __init__(
        self, rules: tuple[Rule, ...], *, default_allow: bool = True, require_peer: bool = False
    ) -> None:
        self.rules = rules
        self.default_allow = default_allow
        self.require_peer = require_peer
        self._denies = tuple(r for r in rules if not r.allow)
        self._allows = tuple(r for r in rules if r.allow)
        self._paths = any(r.has_paths for r in rules)

    @classmethod
    def from_config(cls, config: AuthorizationConfig, *, strict: bool = False) -> Authorizer:
        """Compile a service's ``authorization`` section (``strict``: its ``mtls: strict``)."""
        rules = tuple(_compile(i, r) for i, r in enumerate(config.rules))
        return cls(rules, default_allow=config.default == "allow", require_peer=strict)

    @property
    def allows_everything(self) -> bool:
        """True when no request can be denied: then the sidecar does not ask at all."""
        return self.default_allow and not self._denies and not self.require_peer

    def decide(self, caller: str | None, method: bytes, path: bytes) -> Decision:
        """Allowed or denied, for a request from ``caller`` (``None``: unauthenticated)."""
        if caller is None and self.require_peer:
            return Decision(False, "mtls")
        canonical = canonical_path(path) if self._paths else ""
        for rule in self._denies:
            if rule.matches(caller, method, canonical):
                return Decision(False, rule.name)
        for rule in self._allows:
            if rule.matches(caller, method, canonical):
                return Decision(True, rule.name)
        return Decision(self.default_allow, "default")


def canonical_path(target: bytes) -> str:
    """The path that rules are matched against: no query, ``%2F`` as ``/``, no ``//``, no dots.

    >>> canonical_path(b"/public%2F..%2Fadmin//x?y=1")
    '/admin/x'
    """
    path = target.split(b"?", 1)[0].split(b"#", 1)[0]
    if b"%" in path:
        path = path.replace(b"%2F", b"/").replace(b"%2f", b"/")
        path = path.replace(b"%5C", b"/").replace(b"%5c", b"/")
    if b"//" in path or b"/." in path:
        segments: list[bytes] = []
        parts = path.split(b"/")
        for segment in parts[1:]:
            if segment == b"..":
                if segments:
                    segments.pop()
            elif segment not in (b".", b""):
                segments.append(segment)
        trailing = parts[-1] in (b"", b".", b"..") and len(parts) > 2
        path = b"/" + b"/".join(segments) + (b"/" if trailing and segments else b"")
    return path.decode("utf-8", "replace")
