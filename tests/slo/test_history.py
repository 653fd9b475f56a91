"""SloHistory: an objective's series written to SQLite and read back the same; each save
writes only what changed; history under another definition is not taken."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from seawall.config import SloConfig
from seawall.slo import EventSeries, objectives
from seawall.slo.history import Saved, SloHistory, definition
from seawall.slo.monitor import SloMonitor

DAY = 86_400.0


def feed(s: EventSeries, start: float, minutes: int) -> float:
    t, total, bad = start, 0.0, 0.0
    s.observe("a", t, total, bad)
    for m in range(minutes):
        t += 60
        total += 100
        bad += 1 if m % 7 else 5
        s.observe("a", t, total, bad)
    return t


def test_a_series_comes_back_the_same_and_saves_are_incremental(tmp_path: Path) -> None:
    (o,) = objectives({"orders": SloConfig.model_validate({"availability": "99%"})})
    s = EventSeries(resolution=60, keep=5 * DAY)
    now = feed(s, 0.0, 3 * 1440)  # three days: folded into ten-minute buckets, and kept
    history = SloHistory(tmp_path / "slo.db")
    written = history.save([Saved(o.name, definition(o), s.take_changes())], keep=[o.name])
    assert written > 1440  # the first save writes it all
    back = EventSeries(resolution=60, keep=5 * DAY)
    assert history.load(o.name, definition(o), back)
    for lo, hi in [(now - 3 * DAY, now), (now - DAY, now), (now - 300, now), (0, now)]:
        assert back.events(lo, hi, now) == s.events(lo, hi, now)
    # one more minute: a save writes a few rows, and the copy continues where it stopped
    s.observe("a", now + 60, 3 * 1440 * 100 + 100, 0)
    back.observe("a", now + 60, 3 * 1440 * 100 + 100, 0)
    assert history.save([Saved(o.name, definition(o), s.take_changes())], keep=[o.name]) <= 3
    again = EventSeries(resolution=60, keep=5 * DAY)
    assert history.load(o.name, definition(o), again)
    assert again.events(now - DAY, now + 60) == s.events(now - DAY, now + 60)
    assert back.events(now - DAY, now + 60) == s.events(now - DAY, now + 60)
    history.close()


def test_another_definition_or_a_removed_objective_has_no_history(tmp_path: Path) -> None:
    (o,) = objectives({"orders": SloConfig.model_validate({"availability": "99%"})})
    (tighter,) = objectives({"orders": SloConfig.model_validate({"availability": "99.9%"})})
    s = EventSeries(resolution=60)
    feed(s, 0.0, 10)
    history = SloHistory(tmp_path / "slo.db")
    history.save([Saved(o.name, definition(o), s.take_changes())], keep=[o.name])
    assert not history.load(o.name, definition(tighter), EventSeries())
    history.save([], keep=[])  # the objective left the config
    assert not history.load(o.name, definition(o), EventSeries())
    history.close()
    with pytest.raises(Exception, match="closed"):
        history.save([], keep=[])


def test_a_monitor_without_a_config_leaves_the_kept_history_alone(tmp_path: Path) -> None:
    (o,) = objectives({"orders": SloConfig.model_validate({"availability": "99%"})})
    s = EventSeries(resolution=60)
    feed(s, 0.0, 10)
    store = SloHistory(tmp_path / "slo.db")
    store.save([Saved(o.name, definition(o), s.take_changes())], keep=[o.name])

    async def main() -> None:
        monitor = SloMonitor(lambda: [], lambda: None, store=store)
        async with aiohttp.ClientSession() as session:
            await monitor.pass_once(session)
        assert monitor.save_now() == 0

    asyncio.run(main())
    assert store.load(o.name, definition(o), EventSeries())  # still there
    store.close()


def test_restored_sidecars_that_left_meanwhile_are_forgotten(tmp_path: Path) -> None:
    slos = {"orders": SloConfig.model_validate({"availability": "99%"})}
    (o,) = objectives(slos)
    s = EventSeries(resolution=60)
    feed(s, 0.0, 10)  # source "a"
    store = SloHistory(tmp_path / "slo.db")
    store.save([Saved(o.name, definition(o), s.take_changes())], keep=[o.name])

    async def main() -> list[str]:
        monitor = SloMonitor(lambda: [], lambda: slos, store=store, wall=lambda: 700.0)
        async with aiohttp.ClientSession() as session:
            await monitor.pass_once(session)
        assert monitor.restored == [o.name]
        return monitor.engine.series(o.name).sources

    assert asyncio.run(main()) == []  # "a" is not registered any more: gone, not missing
    store.close()


def test_a_finer_resolution_is_another_history_and_must_divide_ten_minutes() -> None:
    (o,) = objectives({"orders": SloConfig.model_validate({"availability": "99%"})})
    # a minute is the default: histories kept before the option existed keep their key
    assert definition(o) == definition(o, 60.0)
    assert "resolution" not in definition(o)
    assert definition(o, 5.0) != definition(o)
    monitor = SloMonitor(lambda: [], lambda: None, resolution=5.0)
    monitor.engine.apply({"orders": SloConfig.model_validate({"availability": "99%"})})
    assert monitor.engine.series("orders:availability").resolution == 5.0
    for bad in (0.0, 7.0, -5.0):
        with pytest.raises(ValueError, match="resolution must divide 600 seconds"):
            SloMonitor(lambda: [], lambda: None, resolution=bad)
