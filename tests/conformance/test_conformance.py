"""The conformance corpus: seawall.policy (Python) and seawall-policy (Rust) agree, step by step.

Every file under ``corpus/<policy>/`` is one scenario: a config (the keyword
arguments of the Python constructor, which the Rust twin in
``seawall._native`` takes too) and a list of steps. Each step sets the fake
clock, does one thing (an admission, an outcome, a query...) and observes
what that thing returns plus, for the breaker, the state and the transition
it caused. The step's ``expect`` is a subset of that observation. Both
runtimes run the scenario side by side and, at every step, their whole
observations must be equal (floats bit for bit) and match ``expect``.

Scenario format (YAML)::

    description: what it shows
    config: {...}                # constructor keywords; outlier: plus `endpoints`
    error: field                 # instead of steps: construction fails, naming it
    steps:
      - op: admit                # see the drivers below for the ops of each policy
        at: 5.0                  # set the fake clock (absolute seconds), or
        tick: 0.5                # advance it (default: stay)
        repeat: 4                # do the step 4 times (expect holds each time)
        expect: {admitted: true, state: half_open, transitions: [[open, half_open]]}

Randomness is scripted on both sides: a step's ``draws`` are the values
``random()`` returns (Python: a ``random.Random`` subclass; Rust:
``_native.ScriptedRandom``), and the number of values drawn is part of the
observation, so both must consume the same draws.

At the end, Hypothesis generates random configs and step sequences for each
policy and checks that the two runtimes agree on every observation.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seawall import _native
from seawall.policy.backoff import backoff
from seawall.policy.breaker import BreakerState, CircuitBreaker
from seawall.policy.budget import RetryBudget
from seawall.policy.bulkhead import _GRANTED, _WAITING, Bulkhead, _Waiter
from seawall.policy.deadline import _DEADLINE
from seawall.policy.errors import BulkheadFullError, CircuitOpenError
from seawall.policy.outlier import OutlierDetector
from seawall.policy.ratelimit import RateLimiter
from seawall.policy.shed import LoadShedder
from seawall.policy.split import WeightedSplit, choose_subset

CORPUS = Path(__file__).parent / "corpus"
POLICIES = ("breaker", "budget", "bulkhead", "backoff", "outlier", "split", "ratelimit", "shed")

Obs = dict[str, Any]
Step = dict[str, Any]


# =========================================================================== scripted randomness


class ScriptedRandom(random.Random):
    """A ``random.Random`` whose ``random()`` returns the scripted values, in order.

    Drawing more than scripted, or through any other method, fails the test:
    the policies under test may only call ``random()``.
    """

    def __init__(self, values: list[float]) -> None:
        self._values = list(values)
        self.drawn = 0
        super().__init__(0)

    def random(self) -> float:
        if self.drawn >= len(self._values):
            raise AssertionError(f"drew more than the {len(self._values)} scripted values")
        value = self._values[self.drawn]
        self.drawn += 1
        return value

    def getrandbits(self, k: int) -> int:
        raise AssertionError("only random() is scripted")


# =========================================================================== drivers
#
# One driver per policy and runtime, with the same ``step(step, now) -> Obs``.


class _Clock:
    """The Python policies' clock: the scenario's time, set before each step."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _rejection(exc: CircuitOpenError) -> Obs:
    return {
        "admitted": False,
        "rejected_state": exc.state,
        "retry_at": exc.retry_at,
        "retry_after": exc.retry_after,
    }


def _refused(step: Step, swap: Callable[[], object]) -> Obs:
    """A config swap: ``{}`` when taken, ``{"refused": True}`` when the runtime refuses it
    with a ValueError naming the step's ``error`` (the setting at fault)."""
    try:
        swap()
    except ValueError as exc:
        refusal = str(exc)
    else:
        return {}
    assert str(step.get("error", "")) in refusal, f"{refusal} does not name {step.get('error')}"
    return {"refused": True}


class _BreakerDriver:
    """One breaker scenario's steps, read once for both runtimes; the hooks differ."""

    events: list[list[str]]
    permits: dict[str, Any]

    def step(self, step: Step, now: float) -> Obs:
        self.begin(now)
        op = step["op"]
        obs: Obs = {}
        if op == "admit":
            permit, obs = self.admit(now)
            if permit is not None:
                self.permits[step.get("permit", "_")] = permit
        elif op in ("success", "failure", "release"):
            if "permit" in step:
                permit = self.permits.pop(step["permit"])
            else:
                permit, obs = self.admit(now)
                if permit is None:
                    return self.observe(obs)
            self.report(op, permit, now, float(step.get("elapsed", 0.0)))
        elif op == "state":
            obs["value"] = self.state(now)
        elif op == "poll":
            self.poll(now)
        elif op == "metrics":
            obs["metrics"] = self.metrics(now)
        elif op == "force":
            self.force(step["to"], now)
        elif op == "reconfigure":
            obs.update(_refused(step, lambda: self.reconfigure(dict(step["settings"]))))
        else:
            raise AssertionError(f"unknown breaker op {op!r}")
        return self.observe(obs)

    def observe(self, obs: Obs) -> Obs:
        obs["state"] = self.current_state()
        obs["transitions"] = list(self.events)
        return obs

    # the hooks
    def begin(self, now: float) -> None:
        raise NotImplementedError

    def admit(self, now: float) -> tuple[Any, Obs]:
        raise NotImplementedError

    def report(self, op: str, permit: Any, now: float, elapsed: float) -> None:
        raise NotImplementedError

    def state(self, now: float) -> str:
        raise NotImplementedError

    def poll(self, now: float) -> None:
        raise NotImplementedError

    def metrics(self, now: float) -> Obs:
        raise NotImplementedError

    def force(self, to: str, now: float) -> None:
        raise NotImplementedError

    def reconfigure(self, settings: dict[str, Any]) -> None:
        raise NotImplementedError

    def current_state(self) -> str:
        raise NotImplementedError


class PyBreaker(_BreakerDriver):
    def __init__(self, config: dict[str, Any]) -> None:
        self.clock = _Clock()
        self.events = []
        outer = self

        class Listener:
            def on_state_change(
                self, name: str, old: BreakerState, new: BreakerState, now: float
            ) -> None:
                assert now == outer.clock.now
                outer.events.append([old.value, new.value])

            def on_rejected(self, name: str, state: BreakerState, now: float) -> None:
                pass

        self.b = CircuitBreaker(clock=self.clock, listeners=[Listener()], **config)
        self.permits = {}

    def begin(self, now: float) -> None:
        self.clock.now = now
        self.events.clear()

    def admit(self, now: float) -> tuple[int | None, Obs]:
        try:
            permit = self.b.admit(now)
        except CircuitOpenError as exc:
            return None, _rejection(exc)
        return permit, {"admitted": True, "records": permit != -1}

    def report(self, op: str, permit: Any, now: float, elapsed: float) -> None:
        if op == "success":
            self.b.record_success(permit, now, elapsed)
        elif op == "failure":
            self.b.record_failure(permit, now, elapsed)
        else:
            self.b.release(permit)

    def state(self, now: float) -> str:
        return self.b.state.value

    def poll(self, now: float) -> None:
        self.b.poll(now)

    def metrics(self, now: float) -> Obs:
        m = dataclasses.asdict(self.b.metrics())
        del m["name"]
        m["state"] = m["state"].value
        return m

    def force(self, to: str, now: float) -> None:
        if to == "reset":
            self.b.reset()
        else:
            getattr(self.b, f"transition_to_{to}")()

    def reconfigure(self, settings: dict[str, Any]) -> None:
        self.b.reconfigure(**settings)

    def current_state(self) -> str:
        return self.b._state.value


class RsBreaker(_BreakerDriver):
    """Each native call makes at most one transition: counted, and returned by the call."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.b = _native.CircuitBreaker(**config)
        self.permits = {}
        self.events = []

    def call(self, now: float, method: str, *args: Any, returns_transition: bool = True) -> Any:
        b = self.b
        before = b.transition_count
        try:
            result = getattr(b, method)(*args)
        finally:  # a rejected admission may have made one (half-open past its time)
            made = b.transition_count - before
            assert made in (0, 1), f"{method} made {made} transitions"
            if made:
                old, new, at = b.last_transition
                assert at == now
                assert b.transitions_between(old, new) >= 1
                self.events.append([old, new])
        if returns_transition:
            assert (list(result) if result else None) == (self.events[-1] if made else None)
        return result

    def begin(self, now: float) -> None:
        self.events = []

    def admit(self, now: float) -> tuple[Any, Obs]:
        try:
            permit = self.call(now, "admit", now, returns_transition=False)
        except CircuitOpenError as exc:
            return None, _rejection(exc)
        return permit, {"admitted": True, "records": permit.records}

    def report(self, op: str, permit: Any, now: float, elapsed: float) -> None:
        if op == "release":
            self.call(now, "release", permit, returns_transition=False)
        else:
            self.call(now, f"record_{op}", permit, now, elapsed)

    def state(self, now: float) -> str:
        return str(self.call(now, "state", now, returns_transition=False))

    def poll(self, now: float) -> None:
        self.call(now, "poll", now)

    def metrics(self, now: float) -> Obs:
        metrics: Obs = self.call(now, "metrics", now, returns_transition=False)
        return metrics

    def force(self, to: str, now: float) -> None:
        self.call(now, "reset" if to == "reset" else f"transition_to_{to}", now)

    def reconfigure(self, settings: dict[str, Any]) -> None:
        self.b.reconfigure(**settings)

    def current_state(self) -> str:
        return str(self.b.current_state)


class PyBudget:
    def __init__(self, config: dict[str, Any]) -> None:
        self.b = RetryBudget(**config)

    def step(self, step: Step, now: float) -> Obs:
        return _budget_step(self.b, step, now)


class RsBudget:
    def __init__(self, config: dict[str, Any]) -> None:
        self.b = _native.RetryBudget(**config)

    def step(self, step: Step, now: float) -> Obs:
        return _budget_step(self.b, step, now)


def _budget_step(b: Any, step: Step, now: float) -> Obs:
    op = step["op"]
    if op == "deposit":
        b.deposit(now)
        return {}
    if op == "withdraw":
        return {"allowed": b.try_withdraw(now)}
    if op == "available":
        return {"value": b.available(now)}
    if op == "counts":
        return {"value": list(b.counts(now))}
    if op == "reconfigure":
        return _refused(step, lambda: b.reconfigure(**step["settings"]))
    raise AssertionError(f"unknown budget op {op!r}")


class PyRateLimit:
    """``seawall.policy.RateLimiter`` as the sidecar uses it (``max_wait=0``)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.r = RateLimiter(**config, max_wait=0.0)

    def step(self, step: Step, now: float) -> Obs:
        return _ratelimit_step(self.r, step, now)


class RsRateLimit:
    def __init__(self, config: dict[str, Any]) -> None:
        self.r = _native.RateLimiter(**config)

    def step(self, step: Step, now: float) -> Obs:
        return _ratelimit_step(self.r, step, now)


def _ratelimit_step(r: Any, step: Step, now: float) -> Obs:
    op = step["op"]
    if op == "try_acquire":
        return {"allowed": r.try_acquire(now)}
    if op == "retry_after":
        return {"value": r.retry_after(now)}
    if op == "available":
        return {"value": r.available(now)}
    raise AssertionError(f"unknown ratelimit op {op!r}")


class _ShedDriver:
    """The load shedder: ops ``acquire`` (``criticality``), ``release`` (``latency``),
    ``expired``, ``cancel`` (``ticket``) and ``reconfigure`` (``settings``); every
    observation carries the limit, in flight, waiting and the counts."""

    s: Any

    def step(self, step: Step, now: float) -> Obs:
        op = step["op"]
        obs: Obs
        if op == "acquire":
            obs = {"admission": self._admission(self.s.acquire(now, step["criticality"]))}
        elif op == "release":
            obs = {"granted": list(self.s.release(step.get("latency")))}
        elif op == "expired":
            obs = {"shed": list(self.s.expired(now))}
        elif op == "cancel":
            obs = {"cancelled": self.s.cancel(step["ticket"])}
        elif op == "reconfigure":
            granted, shed = self.s.reconfigure(**step["settings"])
            obs = {"granted": list(granted), "shed": list(shed)}
        else:
            raise AssertionError(f"unknown shed op {op!r}")
        counts = self.s.counts()
        return obs | {
            "limit": self.s.limit,
            "in_flight": self.s.in_flight,
            "waiting": self.s.waiting,
            "admitted": dict(counts["admitted"]),
            "shed_by": dict(counts["shed"]),
        }

    def _admission(self, a: Any) -> list[Any]:
        raise NotImplementedError


class PyShed(_ShedDriver):
    def __init__(self, config: dict[str, Any]) -> None:
        self.s = LoadShedder(**config)

    def _admission(self, a: Any) -> list[Any]:
        return [a.kind, a.ticket, a.evicted]


class RsShed(_ShedDriver):
    def __init__(self, config: dict[str, Any]) -> None:
        self.s = _native.LoadShedder(**config)

    def _admission(self, a: Any) -> list[Any]:
        return list(a)


class _BulkheadDriver:
    """The bulkhead's state machine, with the waiting done here (the adapter's part).

    Ops: ``acquire`` (``deadline_in``: seconds left before the call's deadline),
    ``try_acquire``, ``release`` (of a call holding a slot; skipped if none
    does), ``expire`` (queued calls whose wait ran out at the step's time stop
    waiting), ``claim`` and ``cancel`` of a ``ticket`` (a queued call stops
    waiting; one cancelled after it was granted a slot passes it on),
    ``reconfigure`` (``limits``: the new settings, kept ones left out) and
    ``metrics``.
    """

    def __init__(self) -> None:
        self.holders = 0

    def step(self, step: Step, now: float) -> Obs:
        op = step["op"]
        if op == "acquire":
            deadline_in = step.get("deadline_in")
            obs = self.acquire(now, None if deadline_in is None else now + float(deadline_in))
            if obs["admission"] == "granted":
                self.holders += 1
            return obs
        if op == "try_acquire":
            ok = bool(self.try_acquire())
            self.holders += ok
            return {"value": ok}
        if op == "release":
            if not self.holders:
                return {"skipped": True}
            self.holders -= 1
            return {"granted": self.release()}
        if op == "expire":
            return {"expired": self.expire(now)}
        if op in ("claim", "cancel"):
            holds = self.settle(int(step["ticket"]))
            if op == "claim" or not holds:
                self.holders += holds
                return {"holds": holds}
            return {"holds": holds, "granted": self.release()}  # passed on
        if op == "reconfigure":
            granted: list[int] = []
            obs = _refused(step, lambda: granted.extend(self.reconfigure(dict(step["limits"]))))
            return obs or {"granted": granted}
        if op == "metrics":
            return {"metrics": self.metrics()}
        raise AssertionError(f"unknown bulkhead op {op!r}")

    # the hooks
    def acquire(self, now: float, deadline: float | None) -> Obs:
        raise NotImplementedError

    def try_acquire(self) -> bool:
        raise NotImplementedError

    def release(self) -> list[int]:
        raise NotImplementedError

    def expire(self, now: float) -> list[int]:
        raise NotImplementedError

    def settle(self, ticket: int) -> bool:
        raise NotImplementedError

    def reconfigure(self, limits: dict[str, Any]) -> list[int]:
        raise NotImplementedError

    def metrics(self) -> Obs:
        raise NotImplementedError


class PyBulkhead(_BulkheadDriver):
    """``seawall.policy.Bulkhead`` driven through its state machine (what its sync and
    asyncio adapters call), a queued call being a ``_Waiter`` that this driver times."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.b = Bulkhead(**config)
        self.queued: dict[int, tuple[_Waiter, float]] = {}  # ticket: (waiter, expires)

    def _granted(self) -> set[int]:
        return {t for t, (w, _) in self.queued.items() if w.state == _GRANTED}

    def _newly_granted(self, before: set[int]) -> list[int]:
        return sorted(self._granted() - before)

    def acquire(self, now: float, deadline: float | None) -> Obs:
        if self.b.try_acquire():
            return {"admission": "granted"}
        token = _DEADLINE.set(deadline)
        try:
            budget = self.b._budget(now)
        finally:
            _DEADLINE.reset(token)
        waiter = _Waiter(event=threading.Event())
        try:
            with self.b._lock:
                woken = self.b._enqueue_locked(waiter, budget)
        except BulkheadFullError as exc:
            return {"admission": "rejected", "reason": exc.reason}
        if woken is None:
            return {"admission": "granted"}
        assert woken == [], "a free slot and a queued call never stay apart"
        ticket = len(self.queued)
        self.queued[ticket] = (waiter, now + budget)
        return {"admission": "queued", "ticket": ticket}

    def try_acquire(self) -> bool:
        return self.b.try_acquire()

    def release(self) -> list[int]:
        before = self._granted()
        self.b.release()
        return self._newly_granted(before)

    def expire(self, now: float) -> list[int]:
        out = []
        for ticket, (waiter, expires) in sorted(self.queued.items()):
            if waiter.state == _WAITING and expires <= now:
                assert not self.b._settle(waiter, timed_out=True)
                out.append(ticket)
        return out

    def settle(self, ticket: int) -> bool:
        if ticket not in self.queued:
            return False
        return self.b._settle(self.queued[ticket][0], timed_out=False)

    def reconfigure(self, limits: dict[str, Any]) -> list[int]:
        before = self._granted()
        self.b.reconfigure(**limits)
        return self._newly_granted(before)

    def metrics(self) -> Obs:
        m = self.b.metrics()
        return {
            "max_in_flight": m.max_in_flight,
            "in_flight": m.in_flight,
            "waiting": m.waiting,
            "rejected_queue_full": m.rejected_queue_full,
            "rejected_wait_timeout": m.rejected_wait_timeout,
        }


class RsBulkhead(_BulkheadDriver):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.b = _native.Bulkhead(**config)

    def acquire(self, now: float, deadline: float | None) -> Obs:
        what, detail = self.b.acquire(now, deadline)
        if what == "granted":
            return {"admission": "granted"}
        if what == "queued":
            return {"admission": "queued", "ticket": detail}
        return {"admission": "rejected", "reason": detail}

    def try_acquire(self) -> bool:
        ok: bool = self.b.try_acquire()
        return ok

    def release(self) -> list[int]:
        return list(self.b.release())

    def expire(self, now: float) -> list[int]:
        expired = list(self.b.expired(now))
        for ticket in expired:
            assert not self.b.settle(ticket, True)
        return expired

    def settle(self, ticket: int) -> bool:
        holds: bool = self.b.settle(ticket, False)
        return holds

    def reconfigure(self, limits: dict[str, Any]) -> list[int]:
        return list(self.b.reconfigure(**limits))

    def metrics(self) -> Obs:
        return dict(self.b.metrics())


class _BackoffDriver:
    """Chains ``previous`` like a retry loop: the last delay, unless the step gives one."""

    def __init__(self) -> None:
        self.previous = 0.0

    def step(self, step: Step, now: float) -> Obs:
        if step["op"] != "delay":
            raise AssertionError(f"unknown backoff op {step['op']!r}")
        previous = float(step.get("previous", self.previous))
        delay, drawn = self.delay(int(step["attempt"]), previous, list(step.get("draws", [])))
        self.previous = delay
        return {"delay": delay, "drawn": drawn}

    def delay(self, attempt: int, previous: float, draws: list[float]) -> tuple[float, int]:
        raise NotImplementedError


class PyBackoff(_BackoffDriver):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.b = backoff(**config)

    def delay(self, attempt: int, previous: float, draws: list[float]) -> tuple[float, int]:
        rng = ScriptedRandom(draws)
        return self.b.delay(attempt, previous, rng), rng.drawn


class RsBackoff(_BackoffDriver):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.b = _native.Backoff(**config)

    def delay(self, attempt: int, previous: float, draws: list[float]) -> tuple[float, int]:
        rng = _native.ScriptedRandom(draws)
        return self.b.delay(attempt, previous, rng), rng.drawn


class _OutlierDriver:
    od: Any

    def step(self, step: Step, now: float) -> Obs:
        od = self.od
        op = step["op"]
        if op == "result":
            ejected = od.on_result(
                step["endpoint"], now, step.get("status"), step.get("gateway_error", False)
            )
            return {"ejected": ejected}
        if op == "update":
            od.update(list(step["endpoints"]))
            return {}
        if op == "reconfigure":
            return _refused(step, lambda: od.reconfigure(**step["settings"]))
        if op == "is_ejected":
            return {"value": od.is_ejected(step["endpoint"], now)}
        if op == "eligible":
            return {"value": list(od.eligible(list(step["endpoints"]), now))}
        if op == "version":
            return {"value": od.version(now)}
        if op == "ejected_count":
            return {"value": od.ejected_count(now)}
        if op == "ejections":
            return {"value": od.ejections}
        if op == "snapshot":
            return {"snapshot": self.snapshot(now)}
        raise AssertionError(f"unknown outlier op {op!r}")

    def snapshot(self, now: float) -> Obs:
        raise NotImplementedError


def _outlier_config(config: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    kwargs = dict(config)
    return list(kwargs.pop("endpoints", [])), kwargs


class PyOutlier(_OutlierDriver):
    def __init__(self, config: dict[str, Any]) -> None:
        endpoints, kwargs = _outlier_config(config)
        self.od = OutlierDetector(endpoints, **kwargs)

    def snapshot(self, now: float) -> Obs:
        snap = dataclasses.asdict(self.od.snapshot(now))
        snap["endpoints"] = list(snap["endpoints"])
        return snap


class RsOutlier(_OutlierDriver):
    def __init__(self, config: dict[str, Any]) -> None:
        endpoints, kwargs = _outlier_config(config)
        self.od = _native.OutlierDetector(endpoints, **kwargs)

    def snapshot(self, now: float) -> Obs:
        snap: Obs = self.od.snapshot(now)
        return snap


def _split_weights(config: dict[str, Any]) -> list[tuple[str, float]]:
    return [(str(name), weight) for name, weight in config["weights"]]


class PySplit:
    def __init__(self, config: dict[str, Any]) -> None:
        self.split = WeightedSplit(tuple(_split_weights(config)))

    def step(self, step: Step, now: float) -> Obs:
        assert step["op"] == "choose", step
        rng = ScriptedRandom([step["draw"]])
        return {"subset": choose_subset(self.split, rng), "drawn": rng.drawn}


class RsSplit:
    def __init__(self, config: dict[str, Any]) -> None:
        self.split = _native.WeightedSplit(_split_weights(config))

    def step(self, step: Step, now: float) -> Obs:
        assert step["op"] == "choose", step
        rng = _native.ScriptedRandom([step["draw"]])
        return {"subset": self.split.choose(rng), "drawn": rng.drawn}


DRIVERS: dict[str, tuple[Callable[[dict[str, Any]], Any], Callable[[dict[str, Any]], Any]]] = {
    "breaker": (PyBreaker, RsBreaker),
    "budget": (PyBudget, RsBudget),
    "bulkhead": (PyBulkhead, RsBulkhead),
    "backoff": (PyBackoff, RsBackoff),
    "outlier": (PyOutlier, RsOutlier),
    "split": (PySplit, RsSplit),
    "ratelimit": (PyRateLimit, RsRateLimit),
    "shed": (PyShed, RsShed),
}


# =========================================================================== running a scenario


def matches(expected: Any, actual: Any) -> bool:
    """``expected`` is a subset of ``actual``: dict keys, list items; numbers to 1e-12."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and matches(v, actual[k]) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list | tuple)
            and len(expected) == len(actual)
            and all(matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    if expected is None or isinstance(expected, bool | str):
        return type(actual) is type(expected) and actual == expected
    return (
        isinstance(actual, int | float)
        and not isinstance(actual, bool)
        and actual == pytest.approx(expected, rel=1e-12, abs=1e-12)
    )


def same(a: Any, b: Any) -> bool:
    """Equal, floats bit for bit, ints and floats kept apart (1 is not 1.0)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return (
            isinstance(b, list | tuple)
            and len(a) == len(b)
            and all(same(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


def run(
    policy: str,
    config: dict[str, Any],
    steps: list[Step],
    where: str = "",
    rust_config: dict[str, Any] | None = None,
) -> int:
    """Run ``steps`` on both runtimes; return how many steps were done.

    ``rust_config``: the Rust twin's own config when it was derived apart (the
    mesh scenarios: from the sidecar's spec); by default ``config``.
    """
    make_py, make_rs = DRIVERS[policy]
    py = make_py(dict(config))
    rs = make_rs(dict(config if rust_config is None else rust_config))
    now = 0.0
    done = 0
    for index, step in enumerate(steps):
        if "at" in step:
            now = float(step["at"])
        now += float(step.get("tick", 0.0))
        for _ in range(int(step.get("repeat", 1))):
            py_obs = py.step(step, now)
            rs_obs = rs.step(step, now)
            done += 1
            context = f"{where} step {index} {step}"
            assert same(py_obs, rs_obs), f"{context}:\n  python {py_obs}\n  rust   {rs_obs}"
            if "expect" in step:
                assert matches(step["expect"], py_obs), (
                    f"{context}:\n  expected {step['expect']}\n  observed {py_obs}"
                )
    return done


def _scenarios() -> Iterator[Any]:
    for policy in POLICIES:
        for path in sorted((CORPUS / policy).glob("*.yaml")):
            yield pytest.param(policy, path, id=f"{policy}/{path.stem}")


@pytest.mark.parametrize(("policy", "path"), list(_scenarios()))
def test_scenario(policy: str, path: Path) -> None:
    scenario = yaml.safe_load(path.read_text())
    assert set(scenario) <= {"description", "config", "steps", "error"}, path
    assert scenario.get("description"), f"{path}: a scenario says what it shows"
    config = scenario.get("config") or {}
    if "error" in scenario:
        field = scenario["error"]
        make_py, make_rs = DRIVERS[policy]
        for make in (make_py, make_rs):
            with pytest.raises(ValueError, match=field):
                make(dict(config))
        return
    assert run(policy, config, scenario["steps"], str(path.relative_to(CORPUS))) > 0


def test_corpus_covers_every_policy() -> None:
    counts = {p: len(list((CORPUS / p).glob("*.yaml"))) for p in POLICIES}
    assert all(n >= 5 for n in counts.values()), counts


# =========================================================================== random runs agree

TIMES = st.floats(min_value=0.0, max_value=30.0, allow_nan=False, allow_infinity=False)
EXAMPLES = int(os.environ.get("SEAWALL_DIFF_EXAMPLES", "500"))
"""Random sequences per policy: 500 in ``make test`` (3,000 in all), more in ``make fuzz``."""
RANDOM_SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _window(draw: st.DrawFn) -> dict[str, Any]:
    window_type = draw(st.sampled_from(["count", "time"]))
    if window_type == "count":
        return {"window_type": "count", "window_size": draw(st.integers(1, 12))}
    return {
        "window_type": "time",
        "window_size": draw(st.sampled_from([0.3, 1.0, 2.5, 7.0, 10.0])),
        "window_buckets": draw(st.integers(1, 7)),
    }


def _breaker_swap(draw: st.DrawFn) -> dict[str, Any]:
    """New settings for a live breaker: some thresholds, sometimes a new window (or an
    invalid value, which both runtimes must refuse)."""
    options: dict[str, st.SearchStrategy[Any]] = {
        "minimum_calls": st.integers(1, 10),
        "failure_rate": st.sampled_from([10.0, 50.0, 100.0, 0.0]),
        "slow_call_duration": st.sampled_from([None, 0.1, 1.0]),
        "slow_call_rate": st.sampled_from([25.0, 100.0]),
        "open_for": st.sampled_from([0.5, 3.0, 100.0]),
        "open_multiplier": st.sampled_from([1.0, 2.0]),
        "max_open_for": st.sampled_from([3.0, 30.0]),
        "half_open_calls": st.integers(1, 4),
        "max_half_open_time": st.sampled_from([None, 0.5]),
        "automatic_transition": st.booleans(),
    }
    keys = draw(st.lists(st.sampled_from(sorted(options)), max_size=4, unique=True))
    settings = {k: draw(options[k]) for k in keys}
    if draw(st.integers(0, 3)) == 0:
        settings.update(_window(draw))
    return settings


@st.composite
def breaker_runs(draw: st.DrawFn) -> tuple[dict[str, Any], list[Step]]:
    config: dict[str, Any] = _window(draw)
    config["minimum_calls"] = draw(st.integers(1, 10))
    config["failure_rate"] = draw(st.sampled_from([10.0, 33.3, 50.0, 66.7, 100.0]))
    if draw(st.booleans()):
        config["slow_call_duration"] = draw(st.sampled_from([0.1, 0.5, 1.0]))
        config["slow_call_rate"] = draw(st.sampled_from([25.0, 50.0, 100.0]))
    wait = draw(st.sampled_from([0.5, 1.0, 3.0]))
    config["open_for"] = wait
    config["open_multiplier"] = draw(st.sampled_from([1.0, 1.5, 2.0, 3.0]))
    config["max_open_for"] = wait * draw(st.sampled_from([1.0, 2.0, 10.0]))
    config["half_open_calls"] = draw(st.integers(1, 4))
    if draw(st.booleans()):
        config["max_half_open_time"] = draw(st.sampled_from([0.5, 2.0]))
    config["automatic_transition"] = draw(st.booleans())
    return config, draw(breaker_steps())


@st.composite
def breaker_steps(draw: st.DrawFn) -> list[Step]:
    """Random breaker steps: calls, permits held and reported, reads, operator moves, swaps."""
    names = ["a", "b", "c", "d"]
    steps: list[Step] = []
    for _ in range(draw(st.integers(1, 60))):
        tick = draw(st.one_of(st.just(0.0), TIMES.map(lambda t: t / 10)))
        kind = draw(
            st.sampled_from(
                ["call_s", "call_f", "admit", "success", "failure", "release", "state",
                 "poll", "metrics", "force", "reconfigure"]
            )
        )
        step: Step = {"tick": tick}
        elapsed = draw(st.sampled_from([0.0, 0.05, 0.1, 0.5, 1.0, 2.0]))
        if kind in ("call_s", "call_f"):
            step.update(op="success" if kind == "call_s" else "failure", elapsed=elapsed)
        elif kind == "admit":
            step.update(op="admit", permit=draw(st.sampled_from(names)))
        elif kind in ("success", "failure", "release"):
            step.update(op=kind, permit=draw(st.sampled_from(names)), elapsed=elapsed)
        elif kind == "force":
            step.update(op="force", to=draw(st.sampled_from(
                ["closed", "open", "forced_open", "disabled", "metrics_only", "reset"]
            )))
        elif kind == "reconfigure":
            step.update(op="reconfigure", settings=_breaker_swap(draw))
        else:
            step["op"] = kind
        steps.append(step)
    return steps


FOUND = Path(os.environ.get("SEAWALL_CONFORMANCE_FOUND", CORPUS))
"""Where a disagreement found by a random run is kept, as ``<policy>/found_<pid>.yaml``."""


def _run_random(policy: str, config: dict[str, Any], steps: list[Step]) -> None:
    """Like :func:`run`, skipping reports of breaker permits that are not held (on both
    sides alike). A disagreement is written into the corpus as a new scenario (see
    :func:`_keep`): Hypothesis shrinks it first, and replays the minimal sequence
    last, so the file left is that sequence."""
    make_py, make_rs = DRIVERS[policy]
    py, rs = make_py(dict(config)), make_rs(dict(config))
    now = 0.0
    done: list[Step] = []
    for step in steps:
        now += float(step.get("tick", 0.0))
        if policy == "breaker" and "permit" in step and step["op"] != "admit":
            held_py = step["permit"] in py.permits
            assert held_py == (step["permit"] in rs.permits)
            if not held_py:
                continue
        py_obs = py.step(step, now)
        rs_obs = rs.step(step, now)
        done.append(step)
        if not same(py_obs, rs_obs):
            path = _keep(policy, config, done, py_obs, rs_obs)
            raise AssertionError(
                f"step {len(done) - 1} {step}:\n  python {py_obs}\n  rust   {rs_obs}\n"
                f"kept as {path}"
            )


def _keep(policy: str, config: dict[str, Any], steps: list[Step], py: Obs, rs: Obs) -> Path:
    """Write a disagreement as a corpus scenario. It fails (the runtimes disagree at its
    last step) until one runtime is fixed and the right answer set as that step's
    ``expect``."""
    folder = FOUND / policy
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"found_{os.getpid()}.yaml"
    scenario = {
        "description": (
            f"Found by a random run: Python and Rust disagree at the last step (Python "
            f"{py}, Rust {rs}). Decide which is right, set that step's expect, fix the other."
        ),
        "config": config,
        "steps": [dict(step) for step in steps],
    }
    path.write_text(yaml.safe_dump(scenario, sort_keys=False, width=100))
    return path


@RANDOM_SETTINGS
@given(breaker_runs())
def test_breakers_agree_on_random_runs(run_: tuple[dict[str, Any], list[Step]]) -> None:
    config, steps = run_
    _run_random("breaker", config, steps)


@RANDOM_SETTINGS
@given(
    config=st.fixed_dictionaries(
        {
            "ratio": st.sampled_from([0.1, 0.2, 0.29, 0.5, 1.0, 3.0]),
            "min_per_second": st.sampled_from([0.0, 0.1, 1.0, 10.0]),
            "ttl": st.sampled_from([0.3, 1.0, 2.5, 10.0]),
            "buckets": st.integers(1, 12),
        }
    ),
    ops=st.lists(
        st.tuples(
            st.sampled_from(
                ["deposit", "deposit", "withdraw", "withdraw", "available", "counts", "reconfigure"]
            ),
            st.one_of(st.just(0.0), TIMES.map(lambda t: t / 10), TIMES.map(lambda t: -t / 20)),
            st.fixed_dictionaries(
                {},
                optional={
                    "ratio": st.sampled_from([0.1, 0.29, 1.0, 0.0]),  # 0: refused by both
                    "min_per_second": st.sampled_from([0.0, 1.0]),
                    "ttl": st.sampled_from([1.0, 2.5, 10.0]),
                    "buckets": st.integers(1, 12),
                },
            ),
        ),
        max_size=80,
    ),
)
def test_budgets_agree_on_random_runs(
    config: dict[str, Any], ops: list[tuple[str, float, dict[str, Any]]]
) -> None:
    steps: list[Step] = []
    for op, tick, swap in ops:
        step: Step = {"op": op, "tick": tick}
        if op == "reconfigure":
            step["settings"] = swap
        steps.append(step)
    _run_random("budget", config, steps)


@RANDOM_SETTINGS
@given(
    jitter=st.sampled_from(["none", "full", "equal", "decorrelated"]),
    base=st.floats(min_value=0.001, max_value=5.0),
    spread=st.floats(min_value=1.0, max_value=100.0),
    attempts=st.lists(
        st.tuples(
            st.one_of(st.integers(1, 12), st.integers(1, 5000)),
            st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
            st.one_of(st.none(), st.floats(min_value=0.0, max_value=50.0)),
        ),
        min_size=1,
        max_size=20,
    ),
)
def test_backoffs_agree_on_random_runs(
    jitter: str, base: float, spread: float, attempts: list[tuple[int, float, float | None]]
) -> None:
    config = {"jitter": jitter, "base": base, "max": base * spread}
    steps: list[Step] = []
    for attempt, draw, previous in attempts:
        draws = [] if jitter == "none" else [draw]
        step: Step = {"op": "delay", "attempt": attempt, "draws": draws}
        if previous is not None:
            step["previous"] = previous
        steps.append(step)
    _run_random("backoff", config, steps)
    make_py = DRIVERS["backoff"][0]
    py = make_py(config)
    for step in steps:
        assert 0.0 <= py.step(step, 0.0)["delay"] <= config["max"]


@st.composite
def bulkhead_runs(draw: st.DrawFn) -> tuple[dict[str, Any], list[Step]]:
    waits = st.sampled_from([0.0, 0.5, 1.0, 3.0, math.inf])
    config: dict[str, Any] = {
        "max_in_flight": draw(st.integers(1, 4)),
        "max_waiting": draw(st.integers(0, 4)),
        "max_wait": draw(waits),
    }
    return config, draw(bulkhead_steps())


@st.composite
def bulkhead_steps(draw: st.DrawFn) -> list[Step]:
    """Random bulkhead steps: acquisitions (some with a deadline), releases, waits, swaps."""
    waits = st.sampled_from([0.0, 0.5, 1.0, 3.0, math.inf])
    ops = ["acquire"] * 4 + ["release"] * 3 + ["expire"] * 2 + ["claim"] * 2
    ops += ["try_acquire", "cancel", "reconfigure", "metrics"]
    steps: list[Step] = []
    for _ in range(draw(st.integers(1, 60))):
        step: Step = {"tick": draw(st.one_of(st.just(0.0), TIMES.map(lambda t: t / 10)))}
        op = step["op"] = draw(st.sampled_from(ops))
        if op == "acquire" and draw(st.booleans()):
            step["deadline_in"] = draw(st.sampled_from([-1.0, 0.0, 0.2, 1.0, 5.0]))
        elif op in ("claim", "cancel"):
            step["ticket"] = draw(st.integers(0, 10))
        elif op == "reconfigure":
            step["limits"] = draw(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "max_in_flight": st.integers(0, 5),  # 0: refused by both
                        "max_waiting": st.integers(0, 4),
                        "max_wait": waits,
                    },
                )
            )
        steps.append(step)
    return steps


@RANDOM_SETTINGS
@given(bulkhead_runs())
def test_bulkheads_agree_on_random_runs(run_: tuple[dict[str, Any], list[Step]]) -> None:
    config, steps = run_
    _run_random("bulkhead", config, steps)


ENDPOINTS = ["a", "b", "c", "d", "e"]
STATUSES = [None, 200, 404, 499, 500, 501, 502, 503, 504, 599, 600]
QUERIES = ["is_ejected", "eligible", "version", "ejected_count", "ejections"]


@st.composite
def outlier_runs(draw: st.DrawFn) -> tuple[dict[str, Any], list[Step]]:
    config: dict[str, Any] = {
        "endpoints": draw(st.lists(st.sampled_from(ENDPOINTS), max_size=5)),
        "consecutive_5xx": draw(st.integers(0, 4)),
        "consecutive_gateway_errors": draw(st.integers(0, 4)),
        "base_ejection": draw(st.sampled_from([0.5, 1.0, 3.0])),
        "max_ejected_percent": draw(st.sampled_from([0, 10, 33.3, 50, 100])),
        "always_eject_one": draw(st.booleans()),
        "interval": draw(st.sampled_from([0.3, 1.0, 2.0])),
        "consecutive_local_origin_failures": draw(st.one_of(st.none(), st.integers(1, 4))),
    }
    if draw(st.booleans()):
        config["max_ejection"] = config["base_ejection"] * draw(st.sampled_from([1, 2.5, 4]))
    return config, draw(outlier_steps(ENDPOINTS))


@st.composite
def outlier_steps(draw: st.DrawFn, names: list[str]) -> list[Step]:
    """Random outlier steps over endpoints named ``names``: results, membership
    changes, queries, snapshots, swaps."""
    steps: list[Step] = []
    for _ in range(draw(st.integers(1, 80))):
        step: Step = {"tick": draw(st.one_of(st.just(0.0), TIMES.map(lambda t: t / 10)))}
        kind = draw(
            st.sampled_from(["result"] * 6 + ["update", "query", "snapshot", "reconfigure"])
        )
        if kind == "result":
            step.update(
                op="result",
                endpoint=draw(st.sampled_from([*names, "unknown"])),
                status=draw(st.sampled_from(STATUSES)),
                gateway_error=draw(st.booleans()),
            )
        elif kind == "update":
            endpoints = draw(st.lists(st.sampled_from(names), max_size=6))
            step.update(op="update", endpoints=endpoints)
        elif kind == "reconfigure":
            options = {
                "consecutive_5xx": st.integers(0, 4),
                "consecutive_gateway_errors": st.integers(0, 4),
                "base_ejection": st.sampled_from([0.5, 1.0, 3.0, 500.0]),
                "max_ejection": st.sampled_from([1.0, 3.0, 12.0]),
                "max_ejected_percent": st.sampled_from([0, 33.3, 100, 101]),
                "always_eject_one": st.booleans(),
                "interval": st.sampled_from([0.3, 2.0]),
                "consecutive_local_origin_failures": st.one_of(st.none(), st.integers(1, 4)),
            }
            step.update(
                op="reconfigure",
                settings=draw(st.fixed_dictionaries({}, optional=options)),
            )
        elif kind == "query":
            op = draw(st.sampled_from(QUERIES))
            step["op"] = op
            if op == "is_ejected":
                step["endpoint"] = draw(st.sampled_from(names))
            elif op == "eligible":
                step["endpoints"] = draw(st.lists(st.sampled_from(names), max_size=5))
        else:
            step["op"] = "snapshot"
        steps.append(step)
    return steps


@RANDOM_SETTINGS
@given(outlier_runs())
def test_outlier_detectors_agree_on_random_runs(run_: tuple[dict[str, Any], list[Step]]) -> None:
    config, steps = run_
    _run_random("outlier", config, steps)


@RANDOM_SETTINGS
@given(
    # Weights are percentages or shares: not subnormal, where Python's ``random() * total``
    # can round up to the total and index past the last subset (Rust picks the last one).
    weights=st.lists(
        st.one_of(st.just(0.0), st.floats(min_value=1e-6, max_value=1e6), st.integers(0, 100)),
        min_size=1,
        max_size=8,
    ).filter(lambda ws: sum(ws) > 0),
    draws=st.lists(st.floats(min_value=0.0, max_value=1.0, exclude_max=True), min_size=1),
)
def test_splits_agree_on_random_draws(weights: list[float], draws: list[float]) -> None:
    config = {"weights": [[f"v{i}", w] for i, w in enumerate(weights)]}
    _run_random("split", config, [{"op": "choose", "draw": d} for d in [*draws, 0.0, 1 - 2**-53]])


@RANDOM_SETTINGS
@given(
    rate=st.sampled_from([0.1, 0.3, 1.0, 2.5, 7.0, 100.0]),
    burst=st.one_of(st.none(), st.sampled_from([1.0, 1.5, 2.0, 5.0, 40.0])),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["try_acquire", "try_acquire", "try_acquire", "retry_after",
                             "available"]),
            st.one_of(st.just(0.0), TIMES.map(lambda t: t / 10), TIMES.map(lambda t: -t / 20)),
        ),
        max_size=80,
    ),
)  # fmt: skip
def test_rate_limiters_agree_on_random_runs(
    rate: float, burst: float | None, ops: list[tuple[str, float]]
) -> None:
    config: dict[str, Any] = {"rate": rate} if burst is None else {"rate": rate, "burst": burst}
    _run_random("ratelimit", config, [{"op": op, "tick": tick} for op, tick in ops])


@st.composite
def shed_runs(draw: st.DrawFn) -> tuple[dict[str, Any], list[Step]]:
    """A fixed or adaptive shedder, and acquisitions of every level, releases with
    latencies (some slow), expiries, cancellations and a reconfiguration."""
    if draw(st.booleans()):
        config: dict[str, Any] = {"limit": draw(st.integers(1, 4))}
    else:
        config = {
            "initial_limit": draw(st.sampled_from([1.0, 2.0, 3.5, 8.0])),
            "min_limit": 1.0,
            "max_limit": draw(st.sampled_from([8.0, 12.0, 100.0])),
            "smoothing": draw(st.sampled_from([0.2, 0.5, 1.0])),
            "tolerance": draw(st.sampled_from([1.0, 1.5, 2.0])),
            "long_window": draw(st.sampled_from([1, 5, 600])),
            "warmup": draw(st.sampled_from([1, 3, 10])),
        }
    config |= {"max_waiting": draw(st.integers(0, 3)), "max_wait": 0.5}
    levels = ["critical_plus", "critical", "sheddable_plus", "sheddable"]
    steps: list[Step] = []
    for _ in range(draw(st.integers(1, 60))):
        op = draw(st.sampled_from(["acquire"] * 4 + ["release"] * 3 + ["expired", "cancel"]))
        step: Step = {"op": op, "tick": draw(st.sampled_from([0.0, 0.05, 0.3, 0.7]))}
        if op == "acquire":
            step["criticality"] = draw(st.sampled_from(levels))
        elif op == "release":
            step["latency"] = draw(st.sampled_from([None, 0.01, 0.012, 0.02, 0.1, 1.5]))
        elif op == "cancel":
            step["ticket"] = draw(st.integers(0, 10))
        steps.append(step)
    if draw(st.booleans()):
        steps.insert(
            draw(st.integers(0, len(steps))),
            {"op": "reconfigure", "settings": {"limit": draw(st.sampled_from([None, 1, 3])),
                                               "max_waiting": draw(st.integers(0, 2))}},
        )  # fmt: skip
    return config, steps


@RANDOM_SETTINGS
@given(shed_runs())
def test_load_shedders_agree_on_random_runs(run_: tuple[dict[str, Any], list[Step]]) -> None:
    config, steps = run_
    # a release with nothing in flight is the adapter's bug, not a scenario
    _run_random("shed", config, steps)
