"""The SLO page's data: the control plane's ``GET /v1/slos``, read for the UI.

``seawall traces`` does not evaluate SLOs: the control plane does (its
:class:`~seawall.slo.monitor.SloMonitor` scrapes the sidecars). The UI's
``/ui/slos`` page reads it through the collector, so the page, like every
other, talks to its own origin only (the CSP says ``connect-src 'self'``):

=============================================  =====================================
``GET /api/seawall/slos``                      the control plane's ``/v1/slos``, and
                                               ``control``, its URL
``GET /api/seawall/slos/{name}/history``       its ``/v1/slos/{name}/history``
                                               (``step``, a duration, and ``since``,
                                               Unix seconds, passed on)
=============================================  =====================================

Reads need no token on the control plane's API, so none is sent. An answer
is always JSON: with no control plane configured, 503; one that cannot be
reached or answers what is not its SLO report, 502; its own refusals (an
unknown objective, 404; a bad ``step``, 400) keep their status. Each says
what went wrong in ``{"error": {"code", "message", "param"?}}``, so the page
shows why it is empty, never a blank page.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

__all__ = ["ControlError", "ControlFetch", "SloSource"]

ControlFetch = Callable[[str, float], tuple[int, bytes]]
"""``fetch(url, timeout)``: the status and body of any HTTP answer; ``OSError`` (or
:class:`http.client.HTTPException`) when there is none."""

MAX_BODY = 32 << 20
"""The largest answer read from the control plane (1,000 objectives' report is ~3 MB)."""


class ControlError(Exception):
    """What the UI answers when the control plane cannot give the SLOs: a status, a
    message, and the parameter it names, if any."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.param = param


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""No proxy from the environment: the control plane is reached directly (as the CLI does)."""


def _fetch(url: str, timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            return int(answer.status), bytes(answer.read(MAX_BODY))
    except urllib.error.HTTPError as refused:
        with refused:
            return refused.code, bytes(refused.read(64 << 10))


class SloSource:
    """The SLOs of the control plane at ``url`` (``None``: none configured)."""

    def __init__(
        self, url: str | None, *, timeout: float = 2.0, fetch: ControlFetch = _fetch
    ) -> None:
        self.url = url.rstrip("/") if url else None
        self.timeout = timeout
        self._fetch = fetch

    def report(self) -> dict[str, Any]:
        """``GET /v1/slos``, with ``control``: the control plane's URL."""
        doc = self._get("/v1/slos")
        if not isinstance(doc.get("objectives"), list) or not isinstance(doc.get("alerts"), list):
            raise ControlError(
                502, f"the control plane at {self.url} answered /v1/slos without objectives"
            )
        return {"control": self.url, **doc}

    def history(self, name: str, step: str | None, since: str | None = None) -> dict[str, Any]:
        """``GET /v1/slos/{name}/history?step=&since=``."""
        params = {k: v for k, v in (("step", step), ("since", since)) if v}
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        doc = self._get(f"/v1/slos/{urllib.parse.quote(name, safe=':')}/history{query}")
        if not isinstance(doc.get("rows"), list):
            raise ControlError(
                502, f"the control plane at {self.url} answered a history without rows"
            )
        return doc

    def _get(self, path: str) -> dict[str, Any]:
        if self.url is None:
            raise ControlError(
                503,
                "no control plane to read the SLOs from: start seawall traces with "
                "--control URL (or $SEAWALL_CONTROL)",
            )
        try:
            status, body = self._fetch(self.url + path, self.timeout)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise ControlError(
                502, f"the control plane at {self.url} did not answer: {_reason(exc)}"
            ) from None
        try:
            doc = json.loads(body, parse_constant=_no_constant)
        except ValueError:  # (UnicodeDecodeError included)
            doc = None
        if status != 200:
            said = doc.get("error") if isinstance(doc, dict) else None
            message = said if isinstance(said, str) else f"HTTP {status}"
            param = next((p for p in ("step", "since") if message.startswith(f"query.{p}")), None)
            kept = status if status in (400, 404) else 502
            raise ControlError(kept, f"the control plane: {message}", param)
        if not isinstance(doc, dict):
            raise ControlError(
                502, f"the control plane at {self.url} answered {path} with something else "
                "than JSON: is it a seawall control plane?",
            )  # fmt: skip
        return doc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and exc.reason is not None:
        return str(exc.reason)
    return str(exc) or type(exc).__name__
