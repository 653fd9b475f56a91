"""Burn-rate alerts: min_events, for:, resolve, no data, dedupe; Alertmanager's payload."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from seawall.config import SloConfig
from seawall.slo import AlertTracker, EventSeries, Notice, evaluate, objectives, webhook_payload

T0 = datetime(2026, 11, 1, tzinfo=UTC).timestamp()


class Feed:
    """One sidecar's counters, a minute at a time, and the tracker judging after each."""

    def __init__(self, history_per_min: float = 100, **slo: object) -> None:
        config = SloConfig.model_validate({"availability": "99%", **slo})
        (self.objective,) = objectives({"checkout": config})
        self.min_events = config.alerts.min_events
        self.series = EventSeries(resolution=60)
        self.tracker = AlertTracker()
        # three clean days, as history (not judged)
        self.t, self.total, self.bad = T0 - 3 * 86_400, 0.0, 0.0
        self.series.observe("a", self.t, 0, 0)
        while self.t < T0:
            self.t += 60
            self.total += history_per_min
            self.series.observe("a", self.t, self.total, 0)

    def minutes(self, n: int, per_min: float, bad_share: float) -> list[Notice]:
        notices = []
        for _ in range(n):
            self.t += 60
            self.total += per_min
            self.bad += per_min * bad_share
            self.series.observe("a", self.t, self.total, self.bad)
            notices += self.judge(self.t)
        return notices

    def judge(self, now: float) -> list[Notice]:
        status = evaluate(self.objective, self.series, now)  # type: ignore[arg-type]
        return self.tracker.update([(status, self.min_events)], now)


def names(notices: list[Notice]) -> list[tuple[str, str, str]]:
    return [(n.status, n.labels["alertname"], n.labels.get("long", "")) for n in notices]


def test_a_fast_burn_pages_once_and_resolves_after_recovery() -> None:
    f = Feed()
    assert f.minutes(60, 100, 0.0) == []
    # every request fails (100x): the 1h window passes 14.4x after 8.64 minutes
    fired = f.minutes(8, 100, 1.0)
    assert fired == []
    fired = f.minutes(1, 100, 1.0)
    assert names(fired) == [("firing", "SLOBurnRate", "1h")]
    assert fired[0].labels["severity"] == "page"
    assert f.minutes(10, 100, 1.0) == []  # firing already: said once
    # recovery: the 5m window drops under 14.4x when 14.4% of its last 5 minutes are bad
    resolved = f.minutes(5, 100, 0.0)
    assert names(resolved) == [("resolved", "SLOBurnRate", "1h")]
    assert resolved[0].ends_at == f.t
    assert f.judge(f.t) == []  # nothing new: no notice twice


def test_too_few_requests_never_page() -> None:
    f = Feed(history_per_min=1)
    quiet = f.minutes(30, 1, 1.0)  # every request fails, but a 1h window holds 60 at most
    assert [n for n in quiet if n.labels.get("long") == "1h"] == []
    f2 = Feed(history_per_min=1, alerts={"min_events": 0})
    assert ("firing", "SLOBurnRate", "1h") in names(f2.minutes(30, 1, 1.0))


def test_for_holds_an_alert_pending() -> None:
    burn = [{"severity": "page", "long": "1h", "short": "5m", "burn_rate": 14.4, "for": "5m"}]
    f = Feed(alerts={"burn": burn})
    f.minutes(60, 100, 0.0)
    notices = []
    fired_at = None
    for _ in range(20):
        got = f.minutes(1, 100, 1.0)
        if got and fired_at is None:
            fired_at = f.t
        notices += got
    (page,) = [n for n in notices if n.labels["alertname"] == "SLOBurnRate"]
    assert fired_at is not None
    assert fired_at - page.starts_at == pytest.approx(300)  # pending for its 5 minutes
    # a condition that stops before `for` ends never notifies
    burn[0]["for"] = "10m"
    f2 = Feed(alerts={"burn": burn})
    f2.minutes(60, 100, 0.0)
    blip = f2.minutes(10, 100, 1.0) + f2.minutes(30, 100, 0.0)
    assert [n for n in blip if n.labels["alertname"] == "SLOBurnRate"] == []


def test_a_sidecar_that_goes_silent_raises_data_missing() -> None:
    f = Feed()
    f.minutes(30, 100, 0.0)
    assert f.judge(f.t + 60) == []
    missing = f.judge(f.t + 600)  # ten minutes without a scrape
    assert names(missing) == [("firing", "SLODataMissing", "")]
    back = f.minutes(10, 100, 0.0)  # it answers again: its counters were kept
    assert ("resolved", "SLODataMissing", "") in names(back)


def test_the_webhook_payload_is_alertmanagers() -> None:
    f = Feed()
    f.minutes(60, 100, 0.0)
    fired = f.minutes(10, 100, 1.0)
    body = webhook_payload(fired, external_url="http://127.0.0.1:7000/ui/slos")
    assert body["version"] == "4"
    assert body["status"] == "firing"
    assert body["groupLabels"] == {"alertname": "SLOBurnRate"}
    assert body["commonLabels"]["slo"] == "checkout"
    (alert,) = body["alerts"]
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert alert["startsAt"].endswith("Z")
    assert alert["fingerprint"] == fired[0].fingerprint
    assert len(alert["fingerprint"]) == 16
    assert set(alert) == {"status", "labels", "annotations", "startsAt", "endsAt",
                          "generatorURL", "fingerprint"}  # fmt: skip
    resolved = webhook_payload(f.minutes(30, 100, 0.0)[:1])
    assert resolved["status"] == "resolved"
    assert resolved["alerts"][0]["fingerprint"] == alert["fingerprint"]  # same alert
    with pytest.raises(ValueError, match="at least one"):
        webhook_payload([])
