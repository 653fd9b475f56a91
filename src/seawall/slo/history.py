"""The SLOs' history on disk, so a control plane that restarts keeps every budget.

One SQLite file in the control plane's state directory (``slo.db``)::

    objectives (name PRIMARY KEY, definition, folded_to)
    buckets    (name, tier, idx, total, bad, missing, expected,
                PRIMARY KEY (name, tier, idx)) WITHOUT ROWID
    sources    (name, source, t, total, bad, PRIMARY KEY (name, source)) WITHOUT ROWID

``definition`` is the objective's definition (what it counts, its target,
window and budgeting, as JSON): history kept under another definition is
not this objective's, and is dropped when it is loaded. Each save writes, in
one transaction, only what changed since the last one (the recent buckets,
:meth:`EventSeries.take_changes`), and deletes the rows a tier no longer
holds; so a save costs a few rows an objective, and the file holds what the
series hold: a day of minutes and the period in ten-minute buckets (about
300 KB an objective).

Blocking I/O: the control plane calls it from a thread, with changes it took
on its event loop.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .evaluate import Objective
from .series import EventSeries, SeriesChanges

__all__ = ["SloHistory", "definition"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objectives (
    name TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    folded_to REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT NOT NULL,
    tier INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    total REAL NOT NULL,
    bad REAL NOT NULL,
    missing REAL NOT NULL,
    expected REAL NOT NULL,
    PRIMARY KEY (name, tier, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sources (
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    t REAL NOT NULL,
    total REAL NOT NULL,
    bad REAL NOT NULL,
    PRIMARY KEY (name, source)
) WITHOUT ROWID;
"""

_FINE, _COARSE = 0, 1


def definition(o: Objective, resolution: float = 60.0) -> str:
    """What an objective counts and how, as JSON: its history's key. Buckets of
    another ``resolution`` than the default minute are another history too (the key
    names it then, so histories kept at a minute stay valid)."""
    key: dict[str, object] = {
        "kind": o.kind,
        "service": o.service,
        "target": o.target,
        "threshold": o.threshold,
        "window": o.window.model_dump(mode="json"),
        "budgeting": o.budgeting.model_dump(mode="json"),
    }
    if resolution != 60.0:
        key["resolution"] = resolution
    return json.dumps(key, sort_keys=True)


@dataclass(frozen=True, slots=True)
class Saved:
    """One objective's changes to write."""

    name: str
    definition: str
    changes: SeriesChanges


class SloHistory:
    """See the module."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.executescript(_SCHEMA)

    def save(self, saved: Sequence[Saved], keep: Sequence[str]) -> int:
        """Write these changes in one transaction, and forget objectives not in ``keep``;
        the bucket rows written."""
        rows = 0
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                for s in saved:
                    c = s.changes
                    conn.execute(
                        "INSERT INTO objectives (name, definition, folded_to) VALUES (?, ?, ?)"
                        " ON CONFLICT (name) DO UPDATE SET definition = excluded.definition,"
                        " folded_to = excluded.folded_to",
                        (s.name, s.definition, c.folded_to),
                    )
                    for tier, first, buckets in ((_FINE, c.fine_first, c.fine),
                                                 (_COARSE, c.coarse_first, c.coarse)):  # fmt: skip
                        conn.execute(
                            "DELETE FROM buckets WHERE name = ? AND tier = ? AND idx < ?",
                            (s.name, tier, first if first is not None else 1 << 62),
                        )
                        conn.executemany(
                            "INSERT OR REPLACE INTO buckets VALUES (?, ?, ?, ?, ?, ?, ?)",
                            [(s.name, tier, idx, *values) for idx, values in buckets],
                        )
                        rows += len(buckets)
                    conn.execute("DELETE FROM sources WHERE name = ?", (s.name,))
                    conn.executemany(
                        "INSERT INTO sources VALUES (?, ?, ?, ?, ?)",
                        [(s.name, src, *last) for src, last in c.sources.items()],
                    )
                gone = [n for (n,) in conn.execute("SELECT name FROM objectives")
                        if n not in set(keep)]  # fmt: skip
                for name in gone:
                    for table in ("objectives", "buckets", "sources"):
                        conn.execute(f"DELETE FROM {table} WHERE name = ?", (name,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return rows

    def load(self, name: str, key: str, series: EventSeries) -> bool:
        """Fill ``series`` with objective ``name``'s history if it was kept under the
        same definition; ``False`` (and nothing read) otherwise."""
        with self._lock:
            row = self._conn.execute(
                "SELECT definition, folded_to FROM objectives WHERE name = ?", (name,)
            ).fetchone()
            if row is None or row[0] != key:
                return False
            tiers: dict[int, list[tuple[int, tuple[float, float, float, float]]]] = {
                _FINE: [], _COARSE: []
            }  # fmt: skip
            for tier, idx, total, bad, missing, expected in self._conn.execute(
                "SELECT tier, idx, total, bad, missing, expected FROM buckets WHERE name = ?",
                (name,),
            ):
                tiers[tier].append((idx, (total, bad, missing, expected)))
            sources = {
                src: (t, total, bad)
                for src, t, total, bad in self._conn.execute(
                    "SELECT source, t, total, bad FROM sources WHERE name = ?", (name,)
                )
            }
        series.restore(tiers[_FINE], tiers[_COARSE], row[1], sources)
        return True

    def close(self) -> None:
        with self._lock:
            self._conn.close()
