"""The operator's commands against a running control plane.

``seawall apply``, ``seawall status``, ``seawall services`` and ``seawall
certs`` are thin clients of the HTTP API (:mod:`seawall.control.api`). Where
they find it and with what token:

* the URL: ``--control``, else ``$SEAWALL_CONTROL``, else the ``control-url``
  file the server wrote in the state directory, else ``http://127.0.0.1:7600``;
* the admin token (writes only): ``--token``, else ``$SEAWALL_TOKEN``, else
  the ``admin-token`` file in the state directory;
* the state directory: ``--state-dir``, else ``$SEAWALL_STATE_DIR``, else
  ``.seawall``.

Each prints a table for people, or ``--json`` for programs, and returns an
exit status: 0 done, 1 refused (an invalid config, a lagging mesh with
``--check``), 2 unusable (no control plane, no token).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import httpx

from ..config import ConfigError, MeshConfig, load_mesh, parse_mesh
from ..config import diff as config_diff
from ..config.report import issue_from_dict

__all__ = ["Target", "apply", "certs", "diff", "services", "status"]

DEFAULT_URL = "http://127.0.0.1:7600"
DEFAULT_STATE_DIR = ".seawall"


@dataclass(frozen=True, slots=True)
class Target:
    """Where the control plane is and how to authenticate."""

    url: str
    token: str | None

    @classmethod
    def resolve(cls, control: str | None, token: str | None, state_dir: str | None) -> Target:
        """Apply the lookup order of the module docstring."""
        state = Path(state_dir or os.environ.get("SEAWALL_STATE_DIR") or DEFAULT_STATE_DIR)
        url = control or os.environ.get("SEAWALL_CONTROL")
        if not url:
            try:
                url = (state / "control-url").read_text().strip()
            except OSError:
                url = DEFAULT_URL
        tok = token or os.environ.get("SEAWALL_TOKEN")
        if not tok:
            try:
                tok = (state / "admin-token").read_text().strip()
            except OSError:
                tok = None
        return cls(url.split(",")[0].rstrip("/"), tok)

    def call(self, method: str, path: str, *, write: bool = False, **kwargs: Any) -> httpx.Response:
        """One request; raises :class:`SystemExit` (2) when the server cannot be reached.

        The admin token is sent with writes only: reads need none, and a token
        should not travel where it is not needed.
        """
        auth = {"authorization": f"Bearer {self.token}"} if self.token and write else {}
        try:
            with httpx.Client(timeout=10.0, trust_env=False, headers=auth) as client:
                return client.request(method, self.url + path, **kwargs)
        except httpx.HTTPError as exc:
            sys.stderr.write(f"seawall: cannot reach the control plane at {self.url}: {exc}\n")
            raise SystemExit(2) from None


def _fail(response: httpx.Response, out: TextIO) -> int:
    try:
        message = response.json().get("error", response.text)
    except ValueError:
        message = response.text
    out.write(f"seawall: {response.status_code}: {message}\n")
    return 2 if response.status_code in (401, 403) else 1


def _table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    if not rows:
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def apply(target: Target, path: str, *, as_json: bool = False, out: TextIO = sys.stdout) -> int:
    """``seawall apply -f mesh.yaml``: validate here, then store it as the next version."""
    err = sys.stderr
    try:
        mesh = load_mesh(Path(path))
    except ConfigError as exc:
        err.write(exc.describe() + "\nnothing applied\n")
        return 1
    if target.token is None:
        err.write("seawall apply: no admin token (--token, $SEAWALL_TOKEN or --state-dir)\n")
        return 2
    body = Path(path).read_bytes()
    response = target.call(
        "PUT",
        "/v1/config",
        write=True,
        content=body,
        headers={"content-type": "application/yaml"},
    )
    if response.status_code == 422:
        data = response.json()
        issues = [issue_from_dict(i) for i in data.get("errors", []) if isinstance(i, dict)]
        if issues:
            err.write(ConfigError(issues, path).describe() + "\nnothing applied\n")
        else:
            err.write(f"{path}: {data.get('error')}\n")
        return 1
    if response.status_code != 200:
        return _fail(response, err)
    data = response.json()
    if as_json:
        out.write(json.dumps(data) + "\n")
    elif data["changed"]:
        out.write(f"applied {path} as version {data['version']} (digest {data['digest'][:12]})\n")
    else:
        out.write(f"unchanged: version {data['version']} already has digest {mesh.digest()[:12]}\n")
    return 0


def _running(target: Target, against: str | None, err: TextIO) -> MeshConfig | int | None:
    """The config to compare with: the file ``against``, else the control plane's
    current one (``None``: nothing applied yet); an exit status on failure."""
    if against is not None:
        try:
            return load_mesh(Path(against))
        except ConfigError as exc:
            err.write(exc.describe() + "\n")
            return 2
    response = target.call("GET", "/v1/config")
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        _fail(response, err)
        return 2
    return parse_mesh(response.json()["config"])


def diff(
    target: Target,
    path: str,
    *,
    against: str | None = None,
    as_json: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """``seawall diff -f mesh.yaml`` (and ``seawall apply --dry-run``): what applying
    the file would change, against the control plane's current config (or the
    file ``against``), with the restarts it needs and the state it resets.

    Exit status: 0 nothing changes, 1 something does, 2 a config is invalid
    (or the control plane cannot be asked).
    """
    err = sys.stderr
    try:
        new = load_mesh(Path(path))
    except ConfigError as exc:
        err.write(exc.describe() + "\n")
        return 2
    old = _running(target, against, err)
    if isinstance(old, int):
        return old
    if old is None:
        if as_json:
            out.write(json.dumps({"changes": None, "digest": new.digest()}) + "\n")
        else:
            out.write(f"nothing applied yet: all of {path} is new\n")
        return 1
    changes = config_diff.diff(old, new)
    if as_json:
        doc = {
            "changes": [c.to_dict() for c in changes],
            "restart": sorted({c.restart for c in changes if c.restart}),
            "resets": sorted({r for c in changes for r in c.resets}),
            "digest": {"before": old.digest(), "after": new.digest()},
        }
        out.write(json.dumps(doc, indent=1) + "\n")
    else:
        for change in changes:
            out.write(config_diff.describe(change) + "\n")
        out.write(config_diff.summary(changes) + "\n")
    return 1 if changes else 0


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    return f"{seconds / 60:.0f}m ago"


def _until(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    left = epoch - time.time()
    try:
        when = dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{epoch!r} (not a time)"
    if left <= 0:
        return f"{when} (EXPIRED)"
    return f"{when} (in {left / 3600:.1f}h)"


def _status_text(data: dict[str, Any], out: TextIO) -> None:
    lagging = [s for s in data["sidecars"] if s["lagging"]]
    digest = (data.get("digest") or "")[:12] or "-"
    out.write(f"config version {data['config_version']} (digest {digest})\n")
    rows = [["SIDECAR", "SERVICE", "SUBSET", "VERSION", "STATE", "REPORTED"]]
    for s in data["sidecars"]:
        state = "LAGGING" if s["lagging"] else "current"
        if s.get("restart_needed"):
            state += ", RESTART NEEDED"
        rows.append(
            [
                s["id"],
                s["service"],
                s.get("subset") or "-",
                str(s["config_version"]),
                state,
                _ago(s["reported_seconds_ago"]),
            ]
        )
    if len(rows) > 1:
        _table(rows, out)
    else:
        out.write("no sidecar has reported yet\n")
    if lagging:
        out.write(f"{len(lagging)} sidecar(s) lag behind version {data['config_version']}\n")
    for s in data["sidecars"]:
        if s.get("restart_needed"):
            waiting = "; ".join(s["restart_needed"])
            out.write(f"{s['id']} runs its config but waits for a restart: {waiting}\n")
    # the mesh's edges: every caller sidecar's view of each destination it calls
    edges = [["CALLER", "DESTINATION", "BREAKER", "EJECTED"]]
    for s in sorted(data["sidecars"], key=lambda s: (s["service"], s["id"])):
        for name, edge in sorted((s.get("edges") or {}).items()):
            breaker = edge.get("breaker") or "-"
            if breaker not in ("closed", "-"):
                breaker = breaker.upper()  # what needs a look stands out
            ejected = ", ".join(edge.get("ejected") or []) or "-"
            edges.append([f"{s['service']} ({s['id']})", name, breaker, ejected])
    if len(edges) > 1:
        out.write("\n")
        _table(edges, out)
    _rollouts_text(data.get("rollouts") or [], out)


_PHASES = {"pending": "pending", "progressing": "progressing", "promoted": "PROMOTED",
           "rolled_back": "ROLLED BACK"}  # fmt: skip


def _figures(c: dict[str, Any]) -> str:
    """A comparison of ``GET /v1/status``'s rollouts, as one line."""

    def side(s: dict[str, Any]) -> str:
        share = "-" if s.get("ratio") is None else f"{100 * s['ratio']:.2f}%"
        burn = "" if s.get("burn") is None else f", burn {s['burn']:.1f}x"
        return f"{s['bad']:.0f} bad of {s['total']:.0f} ({share}{burn})"

    text = f"{c['judge']}: canary {side(c['canary'])}, baseline {side(c['baseline'])}"
    if c.get("allowed_bad") is not None:
        text += f"; canary allowed {c['allowed_bad']:.0f} bad"
    return text


def _rollouts_text(rollouts: list[dict[str, Any]], out: TextIO) -> None:
    """Each progressive split: where it is, then every decision with its reason."""
    if not rollouts:
        return
    rows = [["ROLLOUT", "CANARY", "WEIGHT", "STEP", "PHASE", "SINCE"]]
    for r in rollouts:
        steps = r["steps"]
        step = f"{r['step'] + 1}/{len(steps)}" if r["step"] >= 0 else "-"
        weight = "-" if r["weight"] is None else f"{r['weight']:g}%"
        since = r.get("step_started_at")
        ago = "-" if since is None else _ago(max(0.0, time.time() - since))
        rows.append([f"{r['destination']}/{r['route']}", r["canary"], weight, step,
                     _PHASES.get(r["phase"], r["phase"]), ago])  # fmt: skip
    out.write("\n")
    _table(rows, out)
    for r in rollouts:
        out.write(f"{r['destination']}/{r['route']}: {r['canary']} against "
                  f"{', '.join(r['baseline'])}, steps {', '.join(f'{s:g}%' for s in r['steps'])}"
                  f" every {r['interval']:g}s, judged on {', '.join(r['judges'])}\n")  # fmt: skip
        for d in r["decisions"]:
            when = dt.datetime.fromtimestamp(d["at"], dt.UTC).strftime("%H:%M:%S")
            out.write(f"  {when}  {d['action']:<8}  {d['reason']}\n")
        for c in r.get("current") or []:
            out.write(f"  this step so far: {_figures(c)}\n")


def status(
    target: Target,
    *,
    as_json: bool = False,
    check: bool = False,
    watch: float | None = None,
    count: int = 0,
    out: TextIO = sys.stdout,
) -> int:
    """``seawall status``: the current version and every sidecar's (laggards marked,
    and the ones waiting for a restart), then every edge of the mesh: each caller's
    breaker state and ejected endpoints per destination.

    ``watch``: print it again every ``watch`` seconds (``count`` times; 0: until
    interrupted), the screen cleared in between when ``out`` is a terminal.
    """
    shown = 0
    while True:
        response = target.call("GET", "/v1/status")
        if response.status_code != 200:
            return _fail(response, sys.stderr)
        data = response.json()
        if watch is not None and out.isatty():
            out.write("\x1b[H\x1b[2J")  # home, clear
        if as_json:
            out.write(json.dumps(data, indent=None if watch else 1) + "\n")
        else:
            _status_text(data, out)
        out.flush()
        shown += 1
        if watch is None or (count and shown >= count):
            break
        try:
            time.sleep(watch)
        except KeyboardInterrupt:
            break
    lagging = [s for s in data["sidecars"] if s["lagging"]]
    return 1 if check and lagging else 0


def _read(
    target: Target, path: str, params: dict[str, str], as_json: bool, out: TextIO
) -> tuple[int, dict[str, Any] | None]:
    """GET ``path``: (exit status, the JSON to show as a table); printed as it is with
    ``as_json``, and ``None`` then (or on an error, reported)."""
    response = target.call("GET", path, params=params)
    if response.status_code != 200:
        return _fail(response, sys.stderr), None
    data: dict[str, Any] = response.json()
    if as_json:
        out.write(json.dumps(data, indent=1) + "\n")
        return 0, None
    return 0, data


def slos(target: Target, *, as_json: bool = False, out: TextIO = sys.stdout) -> int:
    """``seawall slo``: every SLO as the control plane last evaluated it, then its alerts."""
    status, data = _read(target, "/v1/slos", {}, as_json, out)
    if data is not None:
        out.write(_slo_table(data))
    return status


def slo_history(
    target: Target, name: str, step: str | None, *, as_json: bool = False, out: TextIO = sys.stdout
) -> int:
    """``seawall slo history NAME``: how the objective's budget was spent, step by step."""
    params = {} if step is None else {"step": step}
    path = f"/v1/slos/{quote(name, safe=':')}/history"
    status, data = _read(target, path, params, as_json, out)
    if data is None:
        return status
    rows = [["FROM (UTC)", "REQUESTS", "BAD", "BURN", "BUDGET LEFT", "DATA"]]
    for r in data["rows"]:
        start = dt.datetime.fromtimestamp(r["start"], dt.UTC).strftime("%Y-%m-%d %H:%M")
        left = r["budget_remaining"]
        rows.append([start, f"{r['total']:.0f}", f"{r['bad']:.0f}", _burn(r["burn"]),
                     f"{left * 100:.1f}%", f"{r['coverage'] * 100:.0f}%"])  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out.write(f"{data['name']}: target {data['target']:g}%\n")
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
    return 0


def _pct(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}%"


def _burn(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x"


def _left(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _slo_table(data: dict[str, Any]) -> str:
    """The table of ``seawall slo``: one line per objective, then the alerts."""
    objectives = data.get("objectives") or []
    if not objectives:
        when = "not evaluated yet" if data.get("evaluated_at") is None else "none"
        return f"SLOs: {when} (slos: in mesh.yaml; the control plane scrapes the sidecars)\n"
    rows = [["OBJECTIVE", "TARGET", "SLI", "BUDGET LEFT", "BURN 1h/5m", "BURN 6h/30m",
             "EXHAUSTED IN", "EVENTS", "DATA"]]  # fmt: skip
    for o in objectives:
        burns = {(b["long"], b["short"]): b for b in o.get("burn", [])}

        def pair(long: float, short: float, burns: dict[Any, Any] = burns) -> str:
            b = burns.get((long, short))
            return "-" if b is None else f"{_burn(b['long_burn'])}/{_burn(b['short_burn'])}"

        left = o.get("budget_remaining")
        rows.append(
            [
                o["name"],
                f"{o['target']:g}%",
                _pct(o.get("sli"), 3),
                "-" if left is None else f"{left * 100:.1f}%",
                pair(3600.0, 300.0),
                pair(21600.0, 1800.0),
                _left(o.get("exhaustion_s")),
                f"{o['events']['total']:.0f}",
                f"{o.get('coverage', 1.0) * 100:.0f}%",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    alerts = data.get("alerts") or []
    lines.append("")
    if not alerts:
        lines.append("alerts: none")
    for a in alerts:
        labels = a["labels"]
        window = f" {labels['long']}/{labels['short']}" if "long" in labels else ""
        lines.append(
            f"alert {a['state']}: {labels.get('alertname')} {labels.get('slo')}:"
            f"{labels.get('objective')} {labels.get('severity')}{window}"
        )
    return "\n".join(lines) + "\n"


def services(target: Target, *, as_json: bool = False, out: TextIO = sys.stdout) -> int:
    """``seawall services``: every registered instance and its health."""
    response = target.call("GET", "/v1/services")
    if response.status_code != 200:
        return _fail(response, sys.stderr)
    instances = response.json()["instances"]
    if as_json:
        out.write(json.dumps(instances, indent=1) + "\n")
        return 0
    rows = [["SERVICE", "INSTANCE", "SUBSET", "ADDRESS", "HEALTH"]]
    for i in instances:
        health = i["health"]
        if i["ejected_by"]:
            health += f" (by {', '.join(i['ejected_by'])})"
        rows.append(
            [i["service"], i["id"], i["subset"] or "-", f"{i['address']}:{i['port']}", health]
        )
    if len(rows) > 1:
        _table(rows, out)
    else:
        out.write("no instance is registered\n")
    return 0


def certs(
    target: Target,
    action: str,
    service: str | None = None,
    *,
    as_json: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """``seawall certs [list | ca | token SERVICE | revoke SERVICE]``."""
    if action == "ca":
        response = target.call("GET", "/v1/ca")
        if response.status_code != 200:
            return _fail(response, sys.stderr)
        out.write(response.text)
        return 0
    if action == "token":
        if not service:
            sys.stderr.write("seawall certs token: name the service\n")
            return 2
        response = target.call("POST", "/v1/join-tokens", write=True, json={"service": service})
        if response.status_code != 200:
            return _fail(response, sys.stderr)
        data = response.json()
        out.write((json.dumps(data) if as_json else data["token"]) + "\n")
        return 0
    if action == "revoke":
        if not service:
            sys.stderr.write("seawall certs revoke: name the service\n")
            return 2
        response = target.call("POST", f"/v1/join-tokens/{service}/revoke", write=True)
        if response.status_code != 200:
            return _fail(response, sys.stderr)
        data = response.json()
        if as_json:
            out.write(json.dumps(data) + "\n")
        else:
            sys.stderr.write(
                f"revoked the join token of {service} (now generation {data['generation']}): "
                f"{data['deregistered']} instance(s) deregistered; its new token:\n"
            )
            out.write(data["token"] + "\n")
        return 0
    response = target.call("GET", "/v1/status")
    if response.status_code != 200:
        return _fail(response, sys.stderr)
    sidecars = response.json()["sidecars"]
    if as_json:
        keys = ("id", "service", "certificate_serial", "certificate_expires")
        out.write(json.dumps([{k: s.get(k) for k in keys} for s in sidecars], indent=1) + "\n")
        return 0
    rows = [["SIDECAR", "SERVICE", "SUBSET", "SERIAL", "EXPIRES"]]
    for s in sidecars:
        rows.append(
            [
                s["id"],
                s["service"],
                s.get("subset") or "-",
                (s.get("certificate_serial") or "-")[:16],
                _until(s.get("certificate_expires")),
            ]
        )
    if len(rows) > 1:
        _table(rows, out)
    else:
        out.write("no sidecar has reported a certificate yet\n")
    return 0
