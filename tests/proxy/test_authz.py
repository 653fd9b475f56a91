"""Inbound authorization decisions, as pure functions of (caller, method, path)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from seawall.config.model import AuthorizationConfig
from seawall.proxy.authz import Authorizer, Decision, canonical_path


def authz(default: str = "allow", *rules: dict[str, Any], strict: bool = False) -> Authorizer:
    config = AuthorizationConfig.model_validate({"default": default, "rules": list(rules)})
    return Authorizer.from_config(config, strict=strict)


def test_no_rules_allow_everything_and_are_skipped() -> None:
    a = authz()
    assert a.allows_everything
    assert a.decide(None, b"GET", b"/") == Decision(True, "default")
    assert not authz("deny").allows_everything
    assert not authz(strict=True).allows_everything
    assert not authz("allow", {"action": "deny", "from": ["x"]}).allows_everything
    # allow rules alone with default allow can deny nothing either
    assert authz("allow", {"action": "allow", "from": ["x"]}).allows_everything


def test_deny_by_default() -> None:
    a = authz("deny", {"action": "allow", "from": ["orders"]})
    assert a.decide("orders", b"POST", b"/x") == Decision(True, "rules[0]")
    assert a.decide("email", b"POST", b"/x") == Decision(False, "default")
    assert a.decide(None, b"POST", b"/x") == Decision(False, "default")


def test_deny_rules_beat_allow_rules_whatever_their_order() -> None:
    a = authz(
        "allow",
        {"action": "allow", "from": ["orders"], "paths": ["/refunds/*"]},
        {"action": "deny", "from": ["orders"], "paths": ["/refunds/secret"]},
    )
    assert a.decide("orders", b"GET", b"/refunds/1") == Decision(True, "rules[0]")
    assert a.decide("orders", b"GET", b"/refunds/secret") == Decision(False, "rules[1]")


def test_from_star_is_any_authenticated_caller_omitted_is_anyone() -> None:
    star = authz("deny", {"action": "allow", "from": ["*"]})
    assert star.decide("anything", b"GET", b"/").allowed
    assert not star.decide(None, b"GET", b"/").allowed
    anyone = authz("deny", {"action": "allow", "paths": ["/health"]})
    assert anyone.decide(None, b"GET", b"/health").allowed
    assert anyone.decide("orders", b"GET", b"/health").allowed
    assert not anyone.decide(None, b"GET", b"/other").allowed
    deny_plain = authz("allow", {"action": "deny", "from": ["*"], "paths": ["/x"]})
    assert not deny_plain.decide("orders", b"GET", b"/x").allowed
    assert deny_plain.decide(None, b"GET", b"/x").allowed  # "*" never matches plaintext


def test_methods_and_paths() -> None:
    a = authz(
        "deny",
        {"action": "allow", "from": ["orders"], "methods": ["POST"],
         "paths": ["/charge", "/refunds/*"]},
    )  # fmt: skip
    allowed = [(b"POST", b"/charge"), (b"POST", b"/charge?x=1"), (b"POST", b"/refunds/"),
               (b"POST", b"/refunds/7/items")]  # fmt: skip
    denied = [(b"GET", b"/charge"), (b"post", b"/charge"), (b"POST", b"/charge/x"),
              (b"POST", b"/chargeback"), (b"POST", b"/refunds"), (b"POST", b"/")]  # fmt: skip
    for method, path in allowed:
        assert a.decide("orders", method, path).allowed, (method, path)
    for method, path in denied:
        assert not a.decide("orders", method, path).allowed, (method, path)
    everything = authz("deny", {"action": "allow", "paths": ["/*"]})
    assert everything.decide(None, b"GET", b"/any/thing").allowed


def test_encoded_and_dotted_paths_cannot_slip_past_a_deny() -> None:
    a = authz(
        "allow",
        {"action": "deny", "paths": ["/admin/*", "/admin"]},
    )
    for sneaky in (b"/admin", b"//admin/x", b"/admin%2Fx", b"/admin%2fx", b"/public%2F..%2Fadmin",
                   b"/x/../admin/y", b"/./admin/", b"/admin%5Cx?q", b"///admin"):  # fmt: skip
        assert not a.decide("orders", b"GET", sneaky).allowed, sneaky
    assert a.decide("orders", b"GET", b"/administrator").allowed
    assert a.decide("orders", b"GET", b"/public/admin").allowed


def test_strict_denies_unauthenticated_callers_first() -> None:
    a = authz("allow", {"action": "allow", "paths": ["/health"]}, strict=True)
    assert a.decide(None, b"GET", b"/health") == Decision(False, "mtls")
    assert a.decide("orders", b"GET", b"/health") == Decision(True, "rules[0]")


def test_canonical_path() -> None:
    cases = {
        b"/": "/",
        b"/a/b?c=d": "/a/b",
        b"/a//b/": "/a/b/",
        b"/a/./b/../c": "/a/c",
        b"/..": "/",
        b"/a/..": "/",
        b"/a/b/..": "/a/",
        b"/a%2Fb": "/a/b",
        b"*": "*",
        b"/caf\xc3\xa9": "/caf\u00e9",
    }
    for raw, canonical in cases.items():
        assert canonical_path(raw) == canonical, raw


@given(st.lists(st.sampled_from(["a", "b", "..", ".", "", "%2F", "%2e", "admin"]), max_size=8))
def test_canonical_path_is_idempotent_and_absolute(parts: list[str]) -> None:
    path = canonical_path(("/" + "/".join(parts)).encode())
    assert path.startswith("/")
    assert "//" not in path
    assert "/../" not in path + "/"
    assert canonical_path(path.encode()) == path
