"""The control plane's chaos routes, from a client: what the chaos engine calls.

Each helper makes one call with the caller's :class:`httpx.AsyncClient` (its
timeouts, its transport) and the admin token, and raises :class:`RuntimeError`
carrying the control plane's own message on any answer but a 2xx, or when
the control plane cannot be reached::

    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as http:
        fault = await force_cert_expiry(http, url, token, "payments", 3.0, True)
        ...
        await lift_cert_expiry(http, url, token, "payments")

Faults live in the memory of the replica they were forced on (a restart of
it lifts them): talk to the replica the sidecars use.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

__all__ = ["cert_faults", "force_cert_expiry", "lift_cert_expiry"]

PATH = "/v1/chaos/certificates"


async def _call(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    admin_token: str,
    body: dict[str, Any] | None = None,
) -> Any:
    """One call: the answer's JSON, or ``RuntimeError`` saying what went wrong."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    try:
        answer = await http.request(method, url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise RuntimeError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
    try:
        data = answer.json() if answer.content else None
    except ValueError:
        data = None
    if not answer.is_success:
        message = data.get("error") if isinstance(data, dict) else None
        text = message if isinstance(message, str) else answer.text[:500]
        raise RuntimeError(f"{method} {url}: {answer.status_code}: {text}")
    return data


def _url(control_url: str, *parts: str) -> str:
    return control_url.rstrip("/") + PATH + "".join(f"/{quote(p, safe='')}" for p in parts)


async def force_cert_expiry(  # noqa: PLR0917 - the chaos engine's call, positional
    http: httpx.AsyncClient,
    control_url: str,
    admin_token: str,
    service: str,
    ttl: float,
    block_renewal: bool,
) -> dict[str, Any]:
    """Force a certificate expiry on ``service`` (``POST /v1/chaos/certificates``): its
    certificates live ``ttl`` seconds from now on, its sidecars renew at once, and with
    ``block_renewal`` their later renewals are refused. Returns the fault as stored:
    ``{service, ttl, block_renewal, since}``."""
    body = {"service": service, "ttl": ttl, "block_renewal": block_renewal}
    data = await _call(http, "POST", _url(control_url), admin_token, body)
    if not isinstance(data, dict):
        raise RuntimeError(f"POST {_url(control_url)}: the answer is not a JSON object")
    return data


async def lift_cert_expiry(
    http: httpx.AsyncClient, control_url: str, admin_token: str, service: str
) -> None:
    """Lift the forced certificate expiry on ``service`` (``DELETE
    /v1/chaos/certificates/{service}``; nothing in force is not an error)."""
    await _call(http, "DELETE", _url(control_url, service), admin_token)


async def cert_faults(
    http: httpx.AsyncClient, control_url: str, admin_token: str
) -> list[dict[str, Any]]:
    """The forced certificate expiries in force (``GET /v1/chaos/certificates``), each
    ``{service, ttl, block_renewal, since}``."""
    data = await _call(http, "GET", _url(control_url), admin_token)
    faults = data.get("faults") if isinstance(data, dict) else None
    if not isinstance(faults, list):
        raise RuntimeError(f"GET {_url(control_url)}: the answer has no list of faults")
    return [f for f in faults if isinstance(f, dict)]
