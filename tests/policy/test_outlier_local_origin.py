"""Tests for seawall.policy.outlier: the detector over any hashable key, and the local-origin mode.

The proxy-facing behaviour (default mode, ejection times, percentages,
membership) is covered by tests/proxy/test_outlier.py through the re-export in
seawall.proxy.upstream; these tests cover what moved or is new: any hashable
key, the stdlib-only module, and ``consecutive_local_origin_failures``.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.policy.outlier import (
    CONSECUTIVE_LOCAL_ORIGIN_FAILURE,
    OutlierConfig,
    OutlierDetector,
)


def local_failures(od: OutlierDetector[Any], key: Any, now: float, times: int) -> list[bool]:
    return [od.on_result(key, now, None, gateway_error=True) for _ in range(times)]


def responses(
    od: OutlierDetector[Any], key: Any, now: float, status: int, times: int
) -> list[bool]:
    return [od.on_result(key, now, status) for _ in range(times)]


def counters(od: OutlierDetector[Any], index: int = 0) -> tuple[int, int, int]:
    s = od.snapshot(0.0).endpoints[index]
    return s.consecutive_5xx, s.consecutive_gateway_errors, s.consecutive_local_origin_failures


# --------------------------------------------------------------------------- the module


def test_the_policy_module_imports_only_the_standard_library() -> None:
    code = (
        "import sys, seawall.policy.outlier; "
        "print(sorted(m for m in sys.modules if m.startswith('seawall.') "
        "and not m.startswith('seawall.policy')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_any_hashable_key() -> None:
    od: OutlierDetector[tuple[str, int]] = OutlierDetector(
        [("10.0.0.1", 80), ("10.0.0.2", 80)], max_ejected_percent=50
    )
    assert responses(od, ("10.0.0.1", 80), 0.0, 500, 5)[-1] is True
    assert od.eligible([("10.0.0.1", 80), ("10.0.0.2", 80)], 0.0) == [("10.0.0.2", 80)]
    assert od.snapshot(0.0).endpoints[0].endpoint == ("10.0.0.1", 80)
    ids: OutlierDetector[int] = OutlierDetector([7, 8], max_ejected_percent=50)
    assert local_failures(ids, 8, 0.0, 5)[-1] is True
    assert ids.is_ejected(8, 0.0)


# --------------------------------------------------------------------------- config


def test_default_mode_by_default() -> None:
    od: OutlierDetector[str] = OutlierDetector()
    assert od.config.consecutive_local_origin_failures is None
    assert OutlierConfig() == od.config
    assert CONSECUTIVE_LOCAL_ORIGIN_FAILURE not in od.snapshot(0.0).ejections_by_reason


def test_local_origin_threshold_is_keyword_only() -> None:
    config = OutlierConfig(5, 5, 30.0, 300.0, 10.0, True, 10.0, consecutive_local_origin_failures=3)
    assert config.consecutive_local_origin_failures == 3
    with pytest.raises(TypeError):
        OutlierConfig(5, 5, 30.0, 300.0, 10.0, True, 10.0, 3)  # type: ignore[misc]


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "3"])
def test_local_origin_threshold_validation(bad: object) -> None:
    with pytest.raises(
        ValueError,
        match=f"OutlierDetector: consecutive_local_origin_failures must be an int >= 1 or None, "
        f"got {bad!r}",
    ):
        OutlierDetector(consecutive_local_origin_failures=bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the local-origin mode


def test_local_origin_failures_eject_at_their_own_threshold() -> None:
    od = OutlierDetector(["a", "b"], max_ejected_percent=50, consecutive_local_origin_failures=3)
    assert local_failures(od, "a", 0.0, 3) == [False, False, True]
    snap = od.snapshot(0.0)
    assert snap.ejections_by_reason == {
        "consecutive_5xx": 0,
        "consecutive_gateway_error": 0,
        "consecutive_local_origin_failure": 1,
    }
    assert snap.detections[CONSECUTIVE_LOCAL_ORIGIN_FAILURE] == 1
    assert counters(od) == (0, 0, 0)


def test_local_origin_failures_do_not_touch_the_response_counters() -> None:
    od = OutlierDetector(["a", "b"], max_ejected_percent=50, consecutive_local_origin_failures=10)
    responses(od, "a", 0.0, 503, 3)
    local_failures(od, "a", 0.0, 4)
    assert counters(od) == (3, 3, 4)
    # Two more 503s: the 5th gateway error in a row among the responses ejects,
    # although four local-origin failures came in between.
    assert responses(od, "a", 0.0, 503, 2) == [False, True]
    assert od.snapshot(0.0).ejections_by_reason["consecutive_gateway_error"] == 1


@pytest.mark.parametrize("status", [200, 302, 404, 500, 503])
def test_any_response_resets_the_local_origin_counter(status: int) -> None:
    od = OutlierDetector(["a", "b"], max_ejected_percent=50, consecutive_local_origin_failures=3)
    local_failures(od, "a", 0.0, 2)
    od.on_result("a", 0.0, status)
    assert counters(od)[2] == 0
    assert local_failures(od, "a", 0.0, 3) == [False, False, True]


def test_a_cancelled_request_does_not_reset_the_local_origin_counter() -> None:
    od = OutlierDetector(["a", "b"], max_ejected_percent=50, consecutive_local_origin_failures=3)
    local_failures(od, "a", 0.0, 2)
    assert od.on_result("a", 0.0, None) is False  # no information
    assert local_failures(od, "a", 0.0, 1) == [True]


def test_only_local_origin_failures_eject_an_app_answering_503() -> None:
    # The issue: an app that correctly answers 503 while a dependency is down
    # must stay in service; one that cannot be reached must not.
    od = OutlierDetector(
        ["app-1", "app-2"],
        max_ejected_percent=50,
        consecutive_5xx=0,
        consecutive_gateway_errors=0,
        consecutive_local_origin_failures=5,
    )
    assert not any(responses(od, "app-1", 0.0, 503, 1000))
    assert not any(responses(od, "app-1", 0.0, 500, 1000))
    assert local_failures(od, "app-2", 0.0, 5)[-1] is True
    assert od.eligible(["app-1", "app-2"], 0.0) == ["app-1"]


def test_default_mode_still_counts_local_origin_failures_as_gateway_errors() -> None:
    od = OutlierDetector(["a", "b"], max_ejected_percent=50)
    local_failures(od, "a", 0.0, 4)
    assert counters(od) == (4, 4, 0)
    assert od.on_result("a", 0.0, 502) is True
    assert od.snapshot(0.0).ejections_by_reason == {
        "consecutive_5xx": 0,
        "consecutive_gateway_error": 1,
    }


def test_local_origin_ejections_follow_the_timing_rules() -> None:
    od = OutlierDetector(
        ["a", "b"], max_ejected_percent=50, base_ejection=10, consecutive_local_origin_failures=1
    )
    assert local_failures(od, "a", 0.0, 1) == [True]
    assert local_failures(od, "a", 5.0, 10) == [False] * 10  # ejected: ignored
    assert not od.is_ejected("a", 10.0)
    assert counters(od) == (0, 0, 0)
    assert local_failures(od, "a", 10.0, 1) == [True]
    assert od.snapshot(10.0).endpoints[0].ejection_remaining == 20.0


# --------------------------------------------------------------------------- a reference model

OUTCOMES = st.sampled_from(
    [(200, False), (404, False), (500, False), (502, False), (503, False), (500, True),
     (None, True), (None, False)]
)


@settings(max_examples=200, deadline=None)
@given(
    local=st.one_of(st.none(), st.integers(1, 4)),
    c5xx=st.integers(0, 4),
    cgw=st.integers(0, 4),
    outcomes=st.lists(OUTCOMES, max_size=60),
)
def test_counting_matches_a_reference_model(
    local: int | None, c5xx: int, cgw: int, outcomes: list[tuple[int | None, bool]]
) -> None:
    """One endpoint among many (the percentage never binds), ejections too long to end."""
    keys = [f"e{i}" for i in range(10)]
    od = OutlierDetector(
        keys,
        consecutive_5xx=c5xx,
        consecutive_gateway_errors=cgw,
        consecutive_local_origin_failures=local,
        max_ejected_percent=100,
        base_ejection=1e6,
    )
    n5xx = ngw = nlo = 0
    ejected = False
    for status, gateway_error in outcomes:
        did = od.on_result("e0", 0.0, status, gateway_error)
        expected = False
        if ejected or (status is None and not gateway_error):
            pass
        elif status is None and local is not None:
            nlo += 1
            expected = nlo >= local
        elif status is not None and not 500 <= status <= 599:
            n5xx = ngw = nlo = 0
        else:
            nlo = 0
            gateway = gateway_error or status in (502, 503, 504)
            ngw = ngw + 1 if gateway else 0
            n5xx += 1
            expected = bool(cgw and ngw >= cgw) or bool(c5xx and n5xx >= c5xx)
        if expected:
            n5xx = ngw = nlo = 0
            ejected = True
        assert did is expected
        assert od.is_ejected("e0", 0.0) is ejected
        assert counters(od) == (n5xx, ngw, nlo)
