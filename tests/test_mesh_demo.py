"""The mesh demo runs the shop end to end, tells the story it promises, and cleans up.

``python -m examples.mesh_demo`` starts a control plane, six apps (orders twice:
v1 and v2) and six sidecars on loopback, each sidecar managed by the control
plane (config, endpoints, certificate), and an HTTPS stand-in for CardNet, the
card network payments calls as the external service ``cardnet``; it drives
load through the gateway's sidecar, canaries orders v2 and shifts back, then
breaks email, then CardNet, then payments. Its output must show: every
sidecar on the control plane's config, mTLS enforced (a plaintext caller
refused, a caller not allowed denied, no plaintext connection between
sidecars), every charge reaching CardNet over TLS that payments' sidecar
originated (SNI and Host the real host's, no TLS failure), about 10% of the
checkouts answered by v2 during the canary and none after the shift back,
login healthy while email hangs (bulkhead and timeout), the breaker on
cardnet opening while CardNet is down (payments fails fast, CardNet sees few
of the charges, orders' breaker on payments stays closed), checkout failing
fast while payments is down (breaker), both breakers closed and everything
recovered at the end, and no process left behind.

Every hop is traced to the collector the control plane serves. After "email
hangs" and "payments fails" the demo reads one checkout from it by its trace
id and prints its UI page, its critical path and the mesh's decisions on it:
the output must say, from the trace alone, that the slow checkout waited on
email (the bottleneck, about email's timeout) and that orders' sidecar
refused the failed one's charge (the breaker). The collector is gone once the
demo has stopped, so the test checks what the demo printed of it: a trace
id, a span count, and a critical path that tiles the checkout's duration.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EMAIL_TIMEOUT_MS = 500  # policies.email.timeout in examples/shop/mesh.yaml
PROCESSES = 15  # seawall up, the control plane, CardNet's stand-in, 6 apps and 6 sidecars
SIDECARS = 6
CANARY_SHARE = 0.10  # the canary's split: {v1: 90, v2: 10}
PHASES = [
    "healthy",
    "canary",
    "shift back",
    "email hangs",
    "cardnet down",
    "payments fails",
    "recovery",
    "progressive canary",
    "canary fails",
]
CARDNET = "localhost:9443"  # external.cardnet in examples/shop/mesh.yaml
TRACES = "http://127.0.0.1:4318"  # tracing.endpoint in examples/shop/mesh.yaml, its collector
TRACE = re.compile(
    r"^  one checkout from its trace \((?P<spans>\d+) spans, (?P<ms>[\d.]+) ms\):"
    rf" {re.escape(TRACES)}/ui/#/trace/(?P<id>[0-9a-f]{{32}})\n"
    r"    critical path \(what it waited on, in order; self time\):\n"
    r"(?P<path>(?:      .*\n)+?)"
    r"    the mesh's decisions on the trace: (?P<n>\d+|none)\n"
    r"(?P<decisions>(?:      .*\n)*)",
    re.M,
)
PATH_ROW = re.compile(r"^      (\S+) +(.+?) +([\d.]+) ms(   <- bottleneck)?$", re.M)
VERSIONS = re.compile(r"orders v1 (\d+) \([\d.]+%\), v2 (\d+) \([\d.]+%\) of (\d+) checkouts")

ROW = re.compile(
    r"^\s+(?P<route>\S+ → \S+ /\S+)\s+(?P<n>\d+)\s+(?P<ok>[\d.]+)%\s+"
    r"(?P<p50>[\d.]+)\s+(?P<p99>[\d.]+)\s*$"
)


def _phases(out: str) -> dict[str, str]:
    """The text of each phase's report, by title."""
    parts = re.split(r"^== phase \d+/\d+: ([a-z ]+) \(", out, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _rows(section: str) -> dict[str, dict[str, float]]:
    rows = {}
    for line in section.splitlines():
        m = ROW.match(line)
        if m:
            rows[m["route"]] = {k: float(m[k]) for k in ("n", "ok", "p50", "p99")}
    return rows


def _alive(pid: int) -> bool:
    """A live (non-zombie) process with this pid that is one of the demo's children."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    state = stat[stat.rindex(")") + 2 :].split()[0]
    return state != "Z" and (b"examples.shop" in cmdline or b"seawall" in cmdline)


Row = tuple[str, str, float]  # a line of a critical path: service, span, self time (ms)


def _trace(section: str) -> tuple[re.Match[str], list[Row], Row]:
    """The checkout a phase read from its trace: the match, its critical path and the row
    marked as the bottleneck; checked for consistency."""
    found = TRACE.search(section)
    assert found, section
    rows = [(m[1], m[2], float(m[3])) for m in PATH_ROW.finditer(found["path"])]
    marked = [(m[1], m[2], float(m[3])) for m in PATH_ROW.finditer(found["path"]) if m[4]]
    spans, ms = int(found["spans"]), float(found["ms"])
    # every line of the path is a span of the trace, and the path tiles the checkout's
    # duration (its root span's): the self times add up to it
    assert len(rows) == len(found["path"].splitlines()), section
    assert 0 < len(rows) <= spans, section
    assert abs(sum(t for _, _, t in rows) - ms) <= 0.05 * len(rows) + 0.2, section
    # one bottleneck: the largest self time
    assert len(marked) == 1, section
    assert marked[0][2] == max(t for _, _, t in rows), section
    # the root is the gateway's edge (its sidecar's SERVER span), then the gateway app
    assert rows[0][:2] == ("gateway", "sidecar POST checkout SERVER"), section
    assert rows[1][:2] == ("gateway", "POST /checkout SERVER"), section
    decisions = found["decisions"].splitlines()
    count = 0 if found["n"] == "none" else int(found["n"])
    assert len(decisions) == min(count, 6) + (count > 6), section
    return found, rows, marked[0]


def _versions(section: str) -> tuple[int, int]:
    """(v1, v2): the checkouts each orders version answered in a phase."""
    found = VERSIONS.search(section)
    assert found, section
    v1, v2, n = (int(g) for g in found.groups())
    assert v1 + v2 == n, section
    return v1, v2


@pytest.mark.timeout(200)
def test_mesh_demo_story() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.mesh_demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=190,
        check=False,
    )
    out = done.stdout
    report = f"\n--- stdout:\n{out}\n--- stderr:\n{done.stderr}"
    pids = [int(p) for p in re.findall(r"\bpid (\d+)", out)]
    # Every process the demo started (the control plane too) is gone, whatever else happened.
    assert len(pids) == PROCESSES, report
    assert [p for p in pids if _alive(p)] == [], report
    assert re.search(rf"stopped {PROCESSES} processes \(pids [\d ]+\); none remain", out), report
    assert done.returncode == 0, report
    assert "Traceback" not in done.stderr, report

    # The control plane started first, took mesh.yaml as version 1, and every
    # sidecar runs that config, from it.
    assert re.search(r"^  control +pid \d+ +http://127\.0\.0\.1:7600", out, re.M), report
    # The stand-in started first, with a CA of its own; the config applied is a
    # copy of mesh.yaml whose external.cardnet.ca_file is that CA.
    assert re.search(
        rf"^  cardnet +pid \d+ +https://{CARDNET}, .* throwaway CA: \S+/cardnet/ca\.pem$", out, re.M
    ), report
    # The mesh runs on `seawall up`, of a copy of mesh.yaml
    assert re.search(r"^  up +pid \d+ +seawall up -f \S+/mesh\.yaml ", out, re.M), report
    assert re.search(
        r"seawall up applied (\S+)/mesh\.yaml +\(examples/shop/mesh\.yaml,"
        r" external\.cardnet\.ca_file set to the stand-in's CA, tracing\.interval 200ms\)",
        out,
    ), report
    # The control plane serves the trace collector too, where tracing.endpoint points.
    assert re.search(rf"^  control +pid \d+ .*; traces at {re.escape(TRACES)} ", out, re.M), report
    assert re.search(r"applied \S+/mesh\.yaml as version 1 ", out), report
    assert re.search(
        rf"processes ready; {SIDECARS} of {SIDECARS} sidecars registered with the control plane,"
        r" each running config version 1 from it",
        out,
    ), report
    started = re.findall(r"^  \S+ +app pid \d+ .* sidecar pid \d+ ", out, re.M)
    assert len(started) == SIDECARS, report
    # ... and registered its instance: orders twice, v1 on the file's ports and v2 (its
    # subset's own run:) on the ports seawall up allocated
    v2 = re.search(r"^  orders-v2 +app pid \d+ +:\d+ +sidecar pid \d+ +in :(\d+) ", out, re.M)
    assert v2, report
    for subset, port in (("v1", "18002"), ("v2", v2.group(1))):
        row = rf"^    orders +orders\.[0-9a-f]{{16}} +{subset} +127\.0\.0\.1:{port} +healthy$"
        assert re.search(row, out, re.M), report

    # mTLS: each sidecar has a certificate; plaintext into the mesh is refused,
    # and so is a caller the callee does not allow; between sidecars, no plaintext.
    cert_row = r"^    \S+\.[0-9a-f]{16} +\S+ +\S+ +[0-9a-f]+ +\S+ \S+Z \(in "
    certificates = re.findall(cert_row, out, re.M)
    assert len(certificates) == SIDECARS, report
    assert re.search(r"plaintext request to orders' inbound :18002: refused \(", out), report
    assert re.search(r"login's sidecar → payments /charge \(mTLS, as login\): 403 ", out), report
    mtls = re.search(
        r"the sidecars behind the edge accepted (\d+) inbound connections over mTLS"
        r" and (\d+) in plaintext",
        out,
    )
    assert mtls, report
    assert int(mtls.group(1)) > 0, report
    assert int(mtls.group(2)) == 0, report

    phases = _phases(out)
    assert list(phases) == PHASES, report
    healthy, canary, back, hang, down, broken, recovery = (_rows(phases[t]) for t in PHASES[:7])
    for rows in (healthy, canary, back, hang, down, broken, recovery):
        assert len(rows) >= 5, report  # orders → email is empty while a charge fails

    # Every charge went to CardNet over TLS that payments' sidecar originated:
    # the stand-in saw TLS, SNI "localhost" and Host "localhost:9443"; no TLS failure.
    assert healthy["payments → cardnet /charges"]["n"] >= 20, report
    tls = re.search(
        r"cardnet over TLS: the stand-in served (\d+) requests in all, (.*?) \(SNI localhost"
        rf" (\d+), Host {CARDNET} (\d+)\); TLS failures of payments' sidecar to it: 0$",
        out,
        re.M,
    )
    assert tls, report
    served = int(tls.group(1))
    versions = dict(v.split() for v in tls.group(2).split(", "))
    assert served >= 200, report
    assert set(versions) <= {"TLSv1.2", "TLSv1.3"}, report
    assert sum(int(n) for n in versions.values()) == served, report
    assert int(tls.group(3)) == int(tls.group(4)) == served, report

    # 1. Healthy: everything succeeds, and v1 answers every checkout.
    for route, row in healthy.items():
        assert row["ok"] >= 95, (route, report)
    assert _versions(phases["healthy"])[1] == 0, report

    # 2. Canary: the new split reached every sidecar, and v2 answered about 10%
    #    of the checkouts: within 4.5 standard deviations of the binomial at
    #    this count, and at least one (with the ~160 checkouts of the phase, a
    #    correct split fails this about once in 50,000 runs).
    assert re.search(r"applied \S+mesh-canary\.yaml as version 2 ", out), report
    assert "seawall status:" in out, report
    status = out.split("seawall status:", 1)[1].split("phase 2: canary", 1)[0]
    assert "config version 2 " in status, report
    assert len(re.findall(r"^    \S+ +\S+ +\S+ +2 +current ", status, re.M)) == SIDECARS, report
    assert "LAGGING" not in status, report
    for route, row in canary.items():
        assert row["ok"] >= 95, (route, report)
    v1, v2 = _versions(phases["canary"])
    n = v1 + v2
    assert n >= 100, report
    slack = 4.5 * math.sqrt(CANARY_SHARE * (1 - CANARY_SHARE) / n)
    assert CANARY_SHARE - slack <= v2 / n <= CANARY_SHARE + slack, (v2, n, report)
    assert v2 >= 1, report

    # 3. Shift back: the original split again; v2 answers nothing.
    assert re.search(r"applied \S+/mesh\.yaml as version 3 ", out), report
    for route, row in back.items():
        assert row["ok"] >= 95, (route, report)
    v1, v2 = _versions(phases["shift back"])
    assert v1 >= 50, report
    assert v2 == 0, report

    # 4. Email hangs: login stays fast and whole; checkouts still complete, and
    #    wait for email no longer than its timeout; the bulkhead overflowed.
    login = hang["client → gateway /login"]
    assert login["n"] >= 50, report
    assert login["ok"] >= 95, report
    assert login["p99"] < EMAIL_TIMEOUT_MS / 2, report
    checkout = hang["client → gateway /checkout"]
    assert checkout["ok"] >= 95, report
    assert checkout["p99"] < EMAIL_TIMEOUT_MS + 400, report
    assert hang["orders → email /send"]["ok"] <= 5, report
    overflow = re.search(r"email overflow (\d+)", phases["email hangs"])
    assert overflow, report
    assert int(overflow.group(1)) > 0, report
    #    And from one slow checkout's trace alone: the whole chain's spans are in (the
    #    gateway, orders, payments and email, each app and its sidecar), the bottleneck is
    #    email's hop, about its timeout long, and a timeout is among the mesh's decisions.
    slow, path, bottleneck = _trace(phases["email hangs"])
    assert int(slow["spans"]) >= 20, report
    assert float(slow["ms"]) >= 0.8 * EMAIL_TIMEOUT_MS, report
    assert {s for s, _, _ in path} >= {"gateway", "orders", "payments", "email"}, report
    assert bottleneck[0] == "email", report
    assert 0.6 * EMAIL_TIMEOUT_MS <= bottleneck[2] <= EMAIL_TIMEOUT_MS + 50, report
    assert re.search(
        r"^      (orders|email) .*: (timeout: answered|seawall\.deadline\.expired)",
        slow["decisions"],
        re.M,
    ), report

    # 5. CardNet down: the breaker on cardnet in payments' sidecar opens, so
    #    payments fails the charges at once without calling (CardNet sees few of
    #    them); checkouts fail fast, login is untouched, and orders' breaker on
    #    payments stays closed (payments answers: the charge failed, 402).
    section = phases["cardnet down"]
    checkout = down["client → gateway /checkout"]
    assert checkout["n"] >= 40, report
    assert checkout["ok"] <= 10, report
    assert checkout["p50"] < 50, report
    assert down["client → gateway /login"]["ok"] >= 95, report
    assert down["orders → payments /charge"]["p50"] < 50, report
    external = re.search(
        r"cardnet breaker: opened (\d+)x, closed \d+x, seen ([a-z_, ]+); \d+ calls, \d+ failed,"
        r" (\d+) refused at once while open; TLS failures 0",
        section,
    )
    assert external, report
    assert int(external.group(1)) >= 1, report
    assert "open" in external.group(2).split(", "), report
    assert int(external.group(3)) > 0, report
    assert re.search(r"payments breaker: opened 0x, closed 0x, seen closed;", section), report
    assert re.search(r" payments breaker_opened destination=cardnet from=closed ", section), report
    fewer = re.search(
        r"while cardnet was down: .* seen open: yes; payments tried (\d+) charges,"
        r" CardNet got (\d+) ",
        out,
    )
    assert fewer, report
    assert int(fewer.group(1)) >= 40, report
    assert int(fewer.group(2)) <= int(fewer.group(1)) // 2, report

    # 6. Payments fails: checkouts fail, fast (the breaker answers for payments),
    #    while login is untouched; the breaker was seen open.
    checkout = broken["client → gateway /checkout"]
    assert checkout["n"] >= 50, report
    assert checkout["ok"] <= 10, report
    assert checkout["p50"] < 50, report
    assert broken["client → gateway /login"]["ok"] >= 95, report
    breaker = re.search(
        r"payments breaker: opened (\d+)x, closed \d+x, seen ([a-z_, ]+);", phases["payments fails"]
    )
    assert breaker, report
    assert int(breaker.group(1)) >= 1, report
    assert "open" in breaker.group(2).split(", "), report
    fast = re.search(r"failures p50 ([\d.]+) ms; payments breaker seen open: yes", out)
    assert fast, report
    assert float(fast.group(1)) < 50, report
    #    And from one failed checkout's trace alone: orders' sidecar refused its charge (the
    #    breaker), so the path ends at orders' sidecar, fast.
    failed, path, _ = _trace(phases["payments fails"])
    assert failed["id"] != slow["id"], report
    assert re.search(
        r"^      orders +sidecar POST charge → payments CLIENT: seawall\.breaker\.rejected \(state",
        failed["decisions"],
        re.M,
    ), report
    assert ("orders", "sidecar POST charge → payments CLIENT") in {r[:2] for r in path}, report
    assert float(failed["ms"]) < 200, report
    # ... which the summary says, each from its trace.
    waited = re.search(
        r"from its trace alone, a slow checkout while email hung: it waited (\d+) of its"
        r" (\d+) ms on email \(POST /send SERVER\), the bottleneck",
        out,
    )
    assert waited, report
    assert "orders' sidecar refused the charge (seawall.breaker.rejected (state" in out, report

    # 7. Recovery: both breakers closed again, and every route succeeds.
    cleared = r"faults cleared: payments breaker closed, cardnet breaker closed after"
    assert re.search(cleared, out), report
    for route, row in recovery.items():
        assert row["n"] >= 50, (route, report)
        assert row["ok"] >= 95, (route, report)

    # The SLOs. While email hung, login's budget was untouched (the bulkhead, as budget).
    assert re.search(r"SLO login while email hung: SLI 100\.00%, budget left 100\.0%", out), report
    # The outage burnt checkout's budget: the page alert fired (the demo's webhook got it,
    # Alertmanager's JSON) while charges failed, and resolved after the recovery.
    fired = re.search(
        r"SLO checkout: the page alert \((availability|latency), burn >= 14\.4x over 30s and"
        r" 5s\) fired at ([\d.]+) s, during (cardnet down|payments fails); resolved at"
        r" ([\d.]+) s, after the recovery \((\d+) webhook deliveries received\)",
        out,
    )
    assert fired, report
    assert float(fired.group(4)) > float(fired.group(2)), report
    assert re.search(r"FIRING +SLOBurnRate slo=checkout objective=availability severity=page",
                     phases["payments fails"]), report  # fmt: skip
    assert re.search(r"RESOLVED SLOBurnRate slo=checkout objective=availability",
                     phases["recovery"]), report  # fmt: skip
    # A progressive canary of orders v2: raised a step while healthy, then rolled back by
    # the control plane by itself once v2 failed, and v2 gets nothing after.
    assert re.search(r"applied \S+mesh-progressive-canary\.yaml as version 4 ", out), report
    assert re.search(r"^    advance ", phases["progressive canary"], re.M), report
    assert _versions(phases["progressive canary"])[1] >= 1, report
    assert re.search(r"^    rollback ", phases["canary fails"], re.M), report
    assert re.search(r"the rollout \(seawall status\): rolled_back, weights v1 100%, v2 0%",
                     phases["canary fails"]), report  # fmt: skip
    assert re.search(
        r"progressive canary of orders v2: [1-9]\d* step\(s\) up while healthy, then rolled"
        r" back by the control plane: ",
        out,
    ), report
    # At the end, a realistic objective for checkout, with the ceiling its dependencies set.
    suggested = out.split("(seawall slo suggest gateway --route /checkout):", 1)
    assert len(suggested) == 2, report
    assert "ceiling" in suggested[1].split("== what it shows")[0], report

    finished = re.search(r"demo finished in ([\d.]+) s", out)
    assert finished, report
    # about a minute and a half on an idle machine; two at most on a busy one
    assert float(finished.group(1)) < 120, report
