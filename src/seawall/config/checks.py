"""Checks that span sections of a mesh config.

They read the raw data (plain dicts and lists, as parsed from YAML), not the
validated model, so that they run even when the schema found errors
elsewhere: a config with a bad retry count and a policy for an unknown service
reports both at once. Every check is defensive: a part that has the wrong
shape is skipped here, because the schema already reports it.

Each check yields ``(loc, message, got)``: where (keys and list indices), what
is wrong, and the offending value's repr (``None`` to show none).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any

from ._types import is_name

__all__ = ["Found", "cross_check"]

Loc = tuple[str | int, ...]
Found = tuple[Loc, str, str | None]

_WILDCARDS = frozenset(("0.0.0.0", "::", "*"))


def cross_check(data: dict[Any, Any]) -> list[Found]:
    """Every cross-section problem in ``data``, the raw mesh config."""
    services = _dict(data.get("services"))
    found: list[Found] = []
    found += _known_services(data, services)
    found += _external(data, services)
    found += _routes(data, services)
    found += _slos(data, services)
    found += _endpoints(services)
    found += _ports(services)
    found += _authorization(services)
    return found


def _dict(value: object) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _suggest(name: str, known: dict[Any, Any], what: str = "services") -> str:
    names = sorted(k for k in known if is_name(k))
    close = difflib.get_close_matches(name, names, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" ({what}: {', '.join(names)})" if names else ""


def _no_service(loc: Loc, name: str, services: dict[Any, Any]) -> Found:
    return loc, f"no such service{_suggest(name, services)}", None


def _subsets_of(service: object) -> dict[Any, Any] | None:
    """The service's subsets, or None when they are malformed (reported by the schema)."""
    if not isinstance(service, dict):
        return None
    subsets = service.get("subsets", {})
    if subsets is None:
        return {}
    return subsets if isinstance(subsets, dict) else None


def _no_subset(loc: Loc, name: str, service: str, subsets: dict[Any, Any]) -> Found:
    defined = sorted(s for s in subsets if is_name(s))
    hint = f"subsets: {', '.join(defined)}" if defined else "it defines none"
    return loc, f"no subset {name!r} in service {service!r} ({hint})", None


def _known_services(data: dict[Any, Any], services: dict[Any, Any]) -> Iterator[Found]:
    if not services:
        return
    # a policy may be for a declared external service too
    destinations = {**_dict(data.get("external")), **services}
    for name in _dict(data.get("policies")):
        if is_name(name) and name not in destinations:
            yield _no_service(("policies", name), name, destinations)
    for name, service in services.items():
        sidecar = _dict(_dict(service).get("sidecar"))
        for dest in _dict(sidecar.get("upstreams")):
            if is_name(dest) and dest not in services:
                loc = ("services", name, "sidecar", "upstreams", dest)
                yield _no_service(loc, dest, services)


def _slos(data: dict[Any, Any], services: dict[Any, Any]) -> Iterator[Found]:
    """An SLO's service (its name by default), route and caller exist; a journey's SLOs
    are SLOs of the mesh, not journeys."""
    if not services:
        return
    slos = _dict(data.get("slos"))
    for name, raw in slos.items():
        slo = _dict(raw)
        journey = _dict(slo.get("journey"))
        if journey:
            of = journey.get("of")
            for part in of if isinstance(of, list) else _dict(of):
                if not is_name(part):
                    continue
                here = ("slos", name, "journey", "of", part)
                if part not in slos:
                    yield here, f"no such SLO{_suggest(part, slos, 'SLOs')}", None
                elif _dict(slos[part]).get("journey") is not None:
                    yield here, "a journey is made of SLOs, not of journeys", None
            continue
        service = slo.get("service", name)
        if not is_name(service):
            continue
        if service not in services:
            where = ("slos", name, "service") if "service" in slo else ("slos", name)
            yield _no_service(where, service, services)
            continue
        caller = slo.get("caller")
        if isinstance(caller, str) and is_name(caller) and caller not in services:
            yield _no_service(("slos", name, "caller"), caller, services)
        route = slo.get("route")
        if isinstance(route, str):
            routes = _list(_dict(_dict(data.get("policies")).get(service)).get("routes"))
            named = {r.get("name"): None for r in map(_dict, routes) if r.get("name")}
            if route not in named:
                hint = (
                    f" (routes: {', '.join(map(str, named))})"
                    if named
                    else (f" (policies.{service} names none)")
                )
                yield ("slos", name, "route"), f"no route {route!r} of {service!r}{hint}", None


def _external(data: dict[Any, Any], services: dict[Any, Any]) -> Iterator[Found]:
    """An external service's name is a destination name: not a service's too."""
    for name in _dict(data.get("external")):
        if name in services:
            yield (
                ("external", name),
                f"{name!r} is a service of the mesh already; give the external service "
                "another name",
                None,
            )


def _routes(data: dict[Any, Any], services: dict[Any, Any]) -> Iterator[Found]:
    for dest, policy in _dict(data.get("policies")).items():
        seen: dict[str, int] = {}
        for i, route in enumerate(_list(_dict(policy).get("routes"))):
            if not isinstance(route, dict):
                continue
            here: Loc = ("policies", dest, "routes", i)
            name = route.get("name")
            if isinstance(name, str):
                if name in seen:
                    yield (*here, "name"), f"duplicate route name (also routes[{seen[name]}])", None
                seen.setdefault(name, i)
            subsets = _subsets_of(services.get(dest))
            if dest in services and subsets is not None:
                for subset in _dict(route.get("split")):
                    if is_name(subset) and subset not in subsets:
                        yield _no_subset((*here, "split", subset), subset, dest, subsets)
            yield from _mirror(route.get("mirror"), (*here, "mirror"), services)
            yield from _progressive(route, here)


def _progressive(route: dict[Any, Any], here: Loc) -> Iterator[Found]:
    """A progressive split's canary is a subset of its split, beside a baseline."""
    progressive, split = route.get("progressive"), _dict(route.get("split"))
    if not isinstance(progressive, dict) or not split:
        return  # no canary to check, or no split: the schema says so
    canary = progressive.get("canary")
    names = ", ".join(str(name) for name in split)
    if is_name(canary) and canary not in split:
        loc: Loc = (*here, "progressive", "canary")
        yield loc, f"not a subset of the route's split ({names})", repr(canary)
    elif len(split) < 2:
        message = f"needs a baseline beside the canary in the split ({names})"
        yield (*here, "progressive"), message, None


def _mirror(mirror: object, here: Loc, services: dict[Any, Any]) -> Iterator[Found]:
    if not isinstance(mirror, dict) or not services:
        return
    to = mirror.get("to")
    if not is_name(to):
        return
    assert isinstance(to, str)
    if to not in services:
        loc, message, _ = _no_service((*here, "to"), to, services)
        yield loc, message, repr(to)
        return
    subset = mirror.get("subset")
    subsets = _subsets_of(services[to])
    if is_name(subset) and subsets is not None and subset not in subsets:
        assert isinstance(subset, str)
        yield _no_subset((*here, "subset"), subset, to, subsets)


def _endpoints(services: dict[Any, Any]) -> Iterator[Found]:
    for name, service in services.items():
        subsets = _subsets_of(service)
        seen: dict[tuple[object, object], int] = {}
        for i, endpoint in enumerate(_list(_dict(service).get("endpoints"))):
            if not isinstance(endpoint, dict):
                continue
            here: Loc = ("services", name, "endpoints", i)
            subset = endpoint.get("subset")
            if is_name(subset) and subsets is not None and subset not in subsets:
                assert isinstance(subset, str)
                yield _no_subset((*here, "subset"), subset, name, subsets)
            key = (endpoint.get("address"), endpoint.get("port"))
            if isinstance(key[0], str) and _is_port(key[1]):
                if key in seen:
                    yield here, f"duplicate endpoint (also endpoints[{seen[key]}])", None
                seen.setdefault(key, i)


def _authorization(services: dict[Any, Any]) -> Iterator[Found]:
    """Callers named in ``authorization.rules[].from`` and ``authorization.refuse``
    must be services of the mesh."""
    for name, service in services.items():
        authz = _dict(_dict(service).get("authorization"))
        named: list[tuple[Loc, object]] = [
            (("services", name, "authorization", "rules", i, "from", j), caller)
            for i, rule in enumerate(_list(authz.get("rules")))
            for j, caller in enumerate(_list(_dict(rule).get("from")))
        ]
        refused = list(enumerate(_list(authz.get("refuse"))))
        named += [(("services", name, "authorization", "refuse", j), c) for j, c in refused]
        for j, caller in refused:
            if caller == name:  # its instances call each other through their sidecars
                loc: Loc = ("services", name, "authorization", "refuse", j)
                yield loc, "a service cannot refuse itself", repr(caller)
        for loc, caller in named:
            if isinstance(caller, str) and is_name(caller) and caller not in services:
                yield loc, f"no such service{_suggest(caller, services)}", repr(caller)


def _is_port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65_535


def _path(loc: Loc) -> str:
    return ".".join(str(part) for part in loc)


def _ports(services: dict[Any, Any]) -> Iterator[Found]:
    """Two listeners on one port of one host: the second cannot bind."""
    taken: list[tuple[str, int, Loc]] = []
    for name, service in services.items():
        if not isinstance(service, dict):
            continue
        host = service.get("host", "127.0.0.1")
        host = host if isinstance(host, str) else "127.0.0.1"
        sidecar = _dict(service.get("sidecar"))
        listeners: list[tuple[Loc, object]] = [(("services", name, "port"), service.get("port"))]
        for key in ("inbound", "outbound", "admin"):
            listeners.append((("services", name, "sidecar", key), sidecar.get(key)))
        for dest, port in _dict(sidecar.get("upstreams")).items():
            listeners.append((("services", name, "sidecar", "upstreams", dest), port))
        for loc, port in listeners:
            if not _is_port(port):
                continue
            assert isinstance(port, int)
            for other_host, other_port, other_loc in taken:
                same_host = host == other_host or {host, other_host} & _WILDCARDS
                if port == other_port and same_host:
                    yield loc, f"port already used by {_path(other_loc)}", repr(port)
                    break
            else:
                taken.append((host, port, loc))
