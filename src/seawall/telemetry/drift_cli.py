"""``seawall traces drift``: the edges whose p99 drifted from their own baseline.

Asks a running collector (``GET /api/seawall/drift``) and prints one line per
edge, the drifted ones first and marked; ``docs/telemetry/drift.md`` says how
the windows and the threshold are chosen. Exit status: 0 when no edge
drifted, 1 when one did (for a cron job or a CI gate), 2 when the collector
cannot be asked.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any

__all__ = ["drift", "format_drift"]


def format_drift(edges: list[dict[str, Any]]) -> str:
    """The table ``seawall traces drift`` prints."""
    if not edges:
        return "no edge has enough calls in both windows to compare\n"
    rows = [("", "edge", "p99 now", "p99 baseline", "drift", "calls now", "calls baseline")]
    for e in edges:
        ratio = e.get("ratio")
        rows.append(
            (
                "DRIFT" if e.get("flagged") else "",
                f"{e.get('caller')} -> {e.get('callee')}",
                _ms(e.get("currentP99Ms")),
                _ms(e.get("baselineP99Ms")),
                "-" if ratio is None else f"x{ratio:.2f} ({_signed(e.get('differenceMs'))})",
                str(e.get("currentCalls", "")),
                str(e.get("baselineCalls", "")),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() + "\n"
        for r in rows
    )


def _ms(value: object) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.1f} ms"


def _signed(value: object) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:+.1f} ms"


def drift(url: str, *, as_json: bool = False, timeout: float = 10.0) -> int:
    """Print the drift table of the collector at ``url``; the exit status."""
    target = url.rstrip("/") + "/api/seawall/drift"
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:
            body = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        sys.stderr.write(f"seawall traces drift: cannot ask {target}: {exc}\n")
        return 2
    edges = body.get("edges", body) if isinstance(body, dict) else body
    if not isinstance(edges, list):
        sys.stderr.write(f"seawall traces drift: {target} answered {body!r:.200}\n")
        return 2
    if as_json:
        sys.stdout.write(json.dumps(edges, indent=1) + "\n")
    else:
        sys.stdout.write(format_drift(edges))
    return 1 if any(e.get("flagged") for e in edges) else 0
