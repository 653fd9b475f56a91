"""docs/first-mesh.md runs as written, and its outputs are what it shows.

How the page is run:

* Its ```sh blocks are its steps. They run in order in one bash process, as a
  reader pastes them into one terminal (variables, ``$!`` and ``jobs`` carry
  from one block to the next), in a fresh temporary directory, with this
  virtualenv's ``bin`` first on ``PATH`` (``seawall``, ``python``), no HTTP
  proxy variables, and a process session of its own.
* **Ports.** The guide writes fixed example ports: the table at its top, which
  must list exactly :data:`PORTS`. Before the page runs, each of them is
  replaced, wherever it stands as a number of its own in a step or in a shown
  output, by a port free on 127.0.0.1 at that moment. So this test can run
  beside any other test, or a ``make demo``, without a collision, and the
  reader still reads 8001 and 7600.
* **Failures.** Each step is bounded in time (:data:`STEP_TIMEOUT`). A command
  that fails inside a step (as bash's ``set -e`` would see it: an ERR trap
  records it) fails the test, and so does a step whose exit status is not 0,
  except where the guide announces another (:data:`EXPECT`: ``seawall diff``
  exits 1 when there are changes).
* **Outputs.** A ```text block after a step is the output the guide shows for
  it (one at most; the ones before the first step are pictures). Each is
  checked by its entry in :data:`EXPECT`: literally where the output is fixed
  (a price, ``seawall diff``, the event log and ``seawall status`` but for
  times, instance ids and digests), by its shape where it cannot be (the
  canary's random counts, which version's port the outage hit). A shown
  output with no entry fails the test, so none is decoration. The run's
  digests must change where the shown ones do (a new config version), and
  only there.
* **Clean-up.** The page's last step stops what the page started; the test
  then checks that nothing of the session is left, and, whatever happened
  before, ends the session with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "proxy"))
from backends import free_ports  # noqa: E402 - tests/proxy's helpers

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "first-mesh.md"
PORTS = (
    7600,  # the control plane
    8001, 8002, 8012,  # the apps: front, prices v1, prices v2
    18001, 18002, 18012,  # their sidecars: inbound
    15001, 15002, 15012,  # outbound
    19001, 19002, 19012,  # admin
    8443,  # fx, the external API
)  # fmt: skip
STEP_TIMEOUT = 20.0  # seconds; a step that waits for a breaker or a rollout takes a few
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)
# A command that fails where `set -e` would stop is recorded in the step's .err file,
# not fatal: the test decides. The sourcing of a step itself is not recorded.
TRAP = r"""set -o errtrace -o pipefail
trap '__status=$?
case $BASH_COMMAND in
    ". $__steps/"*) ;;
    *) printf "%s\t%s\n" "$__status" "$BASH_COMMAND" >> "$__steps/$__step.err" ;;
esac' ERR
"""


# --------------------------------------------------------------------------- the page


@dataclass
class Step:
    number: int
    script: str
    shown: str | None  # the ```text block after it, if any
    output: str = ""
    status: int | None = None
    failures: list[tuple[int, str]] = field(default_factory=list)  # (status, command)



def _substitute(text: str, ports: dict[int, int]) -> str:
    pattern = re.compile(r"(?<![\w.])(" + "|".join(map(str, ports)) + r")(?![\w])")
    return pattern.sub(lambda m: str(ports[int(m[1])]), text)


def _steps(page: str, ports: dict[int, int]) -> list[Step]:
    steps: list[Step] = []
    for lang, body in FENCE.findall(page):
        if lang == "sh":
            steps.append(Step(len(steps) + 1, _substitute(body, ports), None))
        elif lang == "text" and steps:
            assert steps[-1].shown is None, f"two outputs shown after step {len(steps)}"
            steps[-1].shown = _substitute(body, ports)
    return steps


def test_the_guide_lists_the_ports_it_uses() -> None:
    page = GUIDE.read_text()
    table = page[: page.index("## 1.")]
    assert sorted(int(p) for p in re.findall(r"\b\d{4,5}\b", table)) == sorted(PORTS)


# --------------------------------------------------------------------------- the shell


class Shell:
    """One bash process fed the steps; each step's output, status and failed commands
    go to files under ``steps``."""

    def __init__(self, cwd: Path, steps: Path) -> None:
        self.steps = steps
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(cwd),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
        }
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=(steps / "bash.out").open("w"),
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.send(f"{TRAP}__steps={steps}\n")

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def run(self, step: Step, timeout: float) -> None:
        n, d = step.number, self.steps
        (d / f"{n}.sh").write_text(step.script)
        self.send(
            f"__step={n}; . {d}/{n}.sh > {d}/{n}.out 2>&1 < /dev/null; "
            f"echo $? > {d}/{n}.tmp; mv {d}/{n}.tmp {d}/{n}.rc\n"
        )
        deadline = time.monotonic() + timeout
        rc = d / f"{n}.rc"
        while not rc.exists():
            if self.proc.poll() is not None:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        out = d / f"{n}.out"
        step.output = out.read_text(errors="replace") if out.exists() else ""
        step.status = int(rc.read_text()) if rc.exists() else None
        err = d / f"{n}.err"
        if err.exists():
            for line in err.read_text().splitlines():
                status, _, command = line.partition("\t")
                step.failures.append((int(status), command))

    def members(self) -> list[int]:
        """Live processes of the session but bash itself."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == self.proc.pid:
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                state, _, _, session = stat[stat.rindex(")") + 2 :].split()[:4]
                if int(session) == self.proc.pid and state != "Z":
                    found.append(int(entry.name))
        return found

    def close(self) -> None:
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            deadline = time.monotonic() + grace
            while (self.proc.poll() is None or self.members()) and time.monotonic() < deadline:
                time.sleep(0.05)
        for pid in self.members():  # left its group, not its session
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(2)


# --------------------------------------------------------------------------- the checks

TIME = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\b")
INSTANCE = re.compile(r"\b(front|prices)\.[0-9a-f]{16}\b")
DIGEST = re.compile(r"\bdigest ([0-9a-f]{12})\b")
AGO = re.compile(r"\b\d+s ago\b")


def _norm(text: str) -> list[str]:
    """Lines without what differs from run to run (times, instance ids, digests,
    ages), runs of blanks squeezed to one."""
    out = []
    for raw in text.strip("\n").splitlines():
        line = TIME.sub("<time>", raw)
        line = INSTANCE.sub(r"\1.<id>", line)
        line = DIGEST.sub("digest <digest>", line)
        line = AGO.sub("<n>s ago", line)
        out.append(" ".join(line.split()))
    return out


def _lines(lines: list[str]) -> str:
    return "".join(f"    {line}\n" for line in lines)


def same(step: Step) -> None:
    """The output is the one shown, but for times, ids, digests and ages."""
    assert step.shown is not None
    got, shown = _norm(step.output), _norm(step.shown)
    assert got == shown, f"step {step.number} printed\n{_lines(got)}not\n{_lines(shown)}"


def same_rows(step: Step) -> None:
    """The same lines as shown, in any order (tables sorted by random instance ids)."""
    assert step.shown is not None
    got, shown = sorted(_norm(step.output)), sorted(_norm(step.shown))
    assert got == shown, f"step {step.number} printed\n{_lines(got)}not\n{_lines(shown)}"


def canary(step: Step) -> None:
    """The apply line as shown; then 50 answers, both versions' as shown, v2 had some."""
    assert step.shown is not None
    applied, *shown = _norm(step.shown)
    first, *counts = _norm(step.output)
    assert first == applied
    got = {body: int(n) for n, body in (line.split(" ", 1) for line in counts)}
    assert set(got) == {line.split(" ", 1)[1] for line in shown}, counts
    assert sum(got.values()) == 50
    # 20% of 50: none at all would happen once in 70,000 runs
    assert all(n > 0 for n in got.values()), got


def outage(step: Step) -> None:
    """Three calls failed behind prices' sidecars (on v1's or v2's port, as the
    split chose), then the breaker answered."""
    assert step.shown is not None
    app = re.compile(r"127\.0\.0\.1:\d+")
    lines = step.output.strip().splitlines()
    assert [app.sub("<app>", line) for line in lines] == [
        app.sub("<app>", line) for line in step.shown.strip().splitlines()
    ]
    ports = {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", step.output)}
    assert ports <= {PORT_MAP[8002], PORT_MAP[8012]}, ports


@dataclass(frozen=True)
class Expect:
    """What a step that shows an output must do: ``within`` is a piece of its script
    (so that the list and the page cannot drift apart)."""

    within: str
    check: Callable[[Step], None]
    status: int = 0
    failures: tuple[tuple[int, str], ...] = ()  # commands that may fail: (status, command)


EXPECT = [  # one per shown output, in the page's order
    Expect("python fx.py", same),
    Expect("seawall check -f mesh.yaml", same),
    Expect("seawall apply -f mesh.yaml", same),
    Expect("--service front", same),
    Expect("seawall services", same_rows),
    # exit 1: there are changes, as the guide says
    Expect("seawall diff -f mesh.yaml", same, 1, ((1, "seawall diff -f mesh.yaml"),)),
    Expect("seq 50", canary),
    Expect("kill $PRICES_V1 $PRICES_V2", outage),
    Expect("grep breaker front-sidecar.log", same),
    Expect("seawall status", same_rows),
    Expect("/metrics", same),
    Expect("sleep 5", same),
]
PORT_MAP: dict[int, int] = {}  # the guide's ports -> this run's


def _describe(steps: list[Step], cwd: Path, failed: Step | None = None) -> str:
    """What each step printed (and the failed one's script), then the logs' last lines."""
    parts = []
    for step in steps:
        if step.status is None and not step.output and step is not failed:
            continue
        parts.append(f"--- step {step.number}: exit {step.status} ---")
        if step is failed:
            parts.append(step.script)
            parts.append("--- its output ---")
        parts.append(step.output)
    for log in sorted(cwd.glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-15:]
        parts.append(f"--- {log.name} (last lines) ---\n" + "\n".join(lines))
    return "\n".join(parts)


def _check(step: Step, expect: Expect | None) -> None:
    assert step.status is not None, f"step {step.number} did not finish in {STEP_TIMEOUT:.0f}s"
    status = expect.status if expect else 0
    assert step.status == status, f"step {step.number}: exit {step.status}, not {status}"
    failures = list(expect.failures) if expect else []
    assert step.failures == failures, f"step {step.number}: failed commands {step.failures}"
    if expect is not None:
        expect.check(step)


# --------------------------------------------------------------------------- the tests


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[tuple[Shell, Path]]:
    bin_dir = Path(sys.executable).parent
    for tool in ("bash", "curl", "openssl"):  # what the guide asks its reader for
        if shutil.which(tool) is None:
            pytest.fail(f"docs/first-mesh.md needs {tool}: install it")
    if not (bin_dir / "seawall").exists():
        pytest.fail(f"no seawall command in {bin_dir}: pip install -e '.[mesh]'")
    cwd, steps = tmp_path / "first-mesh", tmp_path / "steps"
    cwd.mkdir()
    steps.mkdir()
    sh = Shell(cwd, steps)
    try:
        yield sh, cwd
    finally:
        sh.close()


@pytest.mark.timeout(120)
def test_the_first_mesh_guide_runs_as_written(shell: tuple[Shell, Path]) -> None:
    sh, cwd = shell
    PORT_MAP.clear()
    PORT_MAP.update(zip(PORTS, free_ports(len(PORTS)), strict=True))
    steps = _steps(GUIDE.read_text(), PORT_MAP)
    showing = [step for step in steps if step.shown is not None]
    assert len(showing) == len(EXPECT), "a shown output without its check, or the reverse"
    expected: dict[int, Expect] = {}
    for step, expect in zip(showing, EXPECT, strict=True):
        assert _substitute(expect.within, PORT_MAP) in step.script, (step.script, expect)
        expected[step.number] = expect
    for step in steps:
        sh.run(step, STEP_TIMEOUT)
        try:
            _check(step, expected.get(step.number))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{_describe(steps, cwd, step)}") from None
    # the last step stopped everything the page started
    deadline = time.monotonic() + 5
    while sh.members() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not sh.members(), _describe(steps, cwd)
    # the same digest where the guide shows the same, another where it shows another
    assert _pattern(s.output for s in steps) == _pattern(s.shown or "" for s in steps)


def _pattern(texts: Iterable[str]) -> list[int]:
    """Each digest in order, as the index of its first appearance: [0, 0, 1, 1]."""
    seen: dict[str, int] = {}
    return [seen.setdefault(d, len(seen)) for t in texts for d in DIGEST.findall(t)]
