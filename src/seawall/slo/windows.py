"""The period an error budget covers, at a given time.

* **Rolling** (``window: 30d``): the last 30 days, always; the budget comes
  back as old failures leave the window.
* **Calendar** (``window: month`` or ``week``, with a ``timezone``): from the
  start of this month (the 1st, 00:00) or this ISO week (Monday, 00:00) in
  that timezone, to the start of the next; the budget is whole again at each
  period's start. Days are the timezone's, so a month in ``Europe/Paris``
  starts an hour before one in UTC, and a week with a DST change is 167 or
  169 hours long.

Times are Unix seconds; nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from ..config.model import SloWindow

__all__ = ["Period", "period"]


@dataclass(frozen=True, slots=True)
class Period:
    """A budget's period: ``[start, end)``; for a rolling window ``end`` is now."""

    start: float
    end: float

    @property
    def length(self) -> float:
        return self.end - self.start


def period(window: SloWindow, now: float) -> Period:
    """The period of ``window`` that holds ``now``."""
    if window.rolling is not None:
        return Period(now - window.rolling, now)
    zone = ZoneInfo(window.timezone)
    local = datetime.fromtimestamp(now, zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if window.calendar == "week":
        first = midnight - timedelta(days=local.weekday())
        nxt = first + timedelta(days=7)
    else:
        first = midnight.replace(day=1)
        nxt = (
            first.replace(year=first.year + 1, month=1)
            if first.month == 12
            else (first.replace(month=first.month + 1))
        )
    # naive arithmetic on local wall times, then each resolved in the zone (DST-correct)
    start = first.replace(tzinfo=None).replace(tzinfo=zone).timestamp()
    end = nxt.replace(tzinfo=None).replace(tzinfo=zone).timestamp()
    return Period(start, end)
