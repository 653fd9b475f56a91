"""The SLO page's routes without a browser: ``/ui/slos`` and ``/api/seawall/slos...``
read from a control plane on loopback (a scripted one, to answer what a real one
would not), every failure an error that says what went wrong; ``seawall traces
--control`` and where it looks when not told."""

from __future__ import annotations

import http.server
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ui_slos import LoopbackServer

from seawall.telemetry.collector import default_control
from seawall.telemetry.store import TraceStore
from seawall.telemetry.traces_api import Answer
from seawall.telemetry.ui_api import UiAPI, UiConfig

ROOT = Path(__file__).resolve().parents[2]
REPORT = {
    "evaluated_at": 1_800_000_000.0,
    "passes": 3,
    "objectives": [{"name": "checkout:availability", "exemplars": []}],
    "alerts": [],
}


class ControlPlane:
    """A scripted control plane on loopback: ``answers[path]`` is (status, body)."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, bytes]] = {}
        self.paths: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.paths.append(self.path)
                status, body = outer.answers.get(self.path, (404, b'{"error": "no route"}'))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.loopback = LoopbackServer(Handler)
        self.url = self.loopback.url

    def close(self) -> None:
        self.loopback.close()


@pytest.fixture
def control() -> Iterator[ControlPlane]:
    plane = ControlPlane()
    yield plane
    plane.close()


@pytest.fixture
def store() -> Iterator[TraceStore]:
    s = TraceStore(":memory:")
    yield s
    s.close()


def get(api: UiAPI, path: str, **params: str) -> tuple[int, Any]:
    answer = api(path, {k: [v] for k, v in params.items()})
    assert isinstance(answer, Answer)
    assert answer.headers["Content-Type"] == "application/json"
    return answer.status, json.loads(answer.body)


def test_the_page_is_served_at_ui_slos_with_the_uis_policy(store: TraceStore) -> None:
    api = UiAPI(store)
    page = api("/ui/slos", {})
    assert page is not None
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "connect-src 'self'" in page.headers["Content-Security-Policy"]
    assert b'data-app="slos"' in page.body  # app.js draws it (slos.js)
    script = api("/ui/slos.js", {})
    assert script is not None
    assert script.status == 200
    index = api("/ui/", {})
    assert index is not None
    assert b'href="slos"' in index.body  # the other pages link to it


def test_the_report_and_a_history_come_from_the_control_plane(
    store: TraceStore, control: ControlPlane
) -> None:
    control.answers["/v1/slos"] = (200, json.dumps(REPORT).encode())
    history = {"name": "checkout:availability", "target": 99.5, "now": 1.0, "rows": []}
    path = "/v1/slos/checkout:availability/history?step=60s&since=1799990000"
    control.answers[path] = (200, json.dumps(history).encode())
    api = UiAPI(store, UiConfig(control_url=control.url + "/"))
    status, doc = get(api, "/api/seawall/slos")
    assert status == 200
    assert doc == {"control": control.url, **REPORT}
    status, doc = get(
        api, "/api/seawall/slos/checkout:availability/history", step="60s", since="1799990000"
    )
    assert (status, doc) == (200, history)
    assert control.paths == ["/v1/slos", path]


def test_its_refusals_keep_their_status_and_say_why(
    store: TraceStore, control: ControlPlane
) -> None:
    control.answers["/v1/slos/nope:availability/history"] = (
        404, b'{"error": "no objective \'nope:availability\' (seawall slo lists them)"}'
    )  # fmt: skip
    control.answers["/v1/slos/a:availability/history?step=fast"] = (
        400, b'{"error": "query.step: \'fast\' is not a duration"}'
    )  # fmt: skip
    api = UiAPI(store, UiConfig(control_url=control.url))
    status, doc = get(api, "/api/seawall/slos/nope:availability/history")
    assert status == 404
    assert "no objective 'nope:availability'" in doc["error"]["message"]
    status, doc = get(api, "/api/seawall/slos/a:availability/history", step="fast")
    assert status == 400
    assert doc["error"]["param"] == "step"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ((500, b"<html>oops</html>"), "the control plane: HTTP 500"),
        ((503, b'{"error": "stopping"}'), "the control plane: stopping"),
        ((200, b"<html>a login page</html>"), "something else than JSON"),
        ((200, b'{"objectives": NaN, "alerts": []}'), "something else than JSON"),
        ((200, b'{"hello": "world"}'), "answered /v1/slos without objectives"),
    ],
)
def test_a_control_plane_that_answers_something_else_is_a_502_that_says_so(
    store: TraceStore, control: ControlPlane, answer: tuple[int, bytes], message: str
) -> None:
    control.answers["/v1/slos"] = answer
    status, doc = get(UiAPI(store, UiConfig(control_url=control.url)), "/api/seawall/slos")
    assert status == 502
    assert message in doc["error"]["message"]


def test_none_configured_or_none_answering(store: TraceStore) -> None:
    status, doc = get(UiAPI(store), "/api/seawall/slos")
    assert status == 503
    assert "--control URL" in doc["error"]["message"]
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    status, doc = get(UiAPI(store, UiConfig(control_url=url)), "/api/seawall/slos")
    assert status == 502
    assert f"the control plane at {url} did not answer" in doc["error"]["message"]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"control_url": "127.0.0.1:7600"}, "control_url must be an http(s) URL"),
        ({"control_timeout": 0}, "control_timeout must be in (0, 30]"),
        ({"control_timeout": True}, "control_timeout"),
    ],
)
def test_ui_config_refuses_a_bad_control_setting(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        UiConfig(**kwargs)


def test_where_seawall_traces_finds_the_control_plane(tmp_path: Path) -> None:
    env = {"SEAWALL_CONTROL": "http://a:7600,http://b:7600", "SEAWALL_STATE_DIR": str(tmp_path)}
    assert default_control(env) == "http://a:7600"
    (tmp_path / "control-url").write_text("http://127.0.0.1:7601\n")
    assert default_control({"SEAWALL_STATE_DIR": str(tmp_path)}) == "http://127.0.0.1:7601"
    assert default_control({"SEAWALL_STATE_DIR": str(tmp_path / "none")}) is None


def test_seawall_traces_control_reads_the_slos_there(tmp_path: Path, control: ControlPlane) -> None:
    control.answers["/v1/slos"] = (200, json.dumps(REPORT).encode())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [sys.executable, "-m", "seawall", "traces", "--listen", f"127.0.0.1:{port}",
            "--store", str(tmp_path / "traces.db"), "--control", control.url]  # fmt: skip
    refused = subprocess.run(
        [*args[:-1], "ftp://nowhere"], capture_output=True, text=True, timeout=60, check=False
    )
    assert refused.returncode == 2
    assert "--control 'ftp://nowhere': must be an http(s) URL" in refused.stderr
    process = subprocess.Popen(args, cwd=tmp_path, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        with httpx.Client(trust_env=False, timeout=5) as client:
            while True:
                try:
                    answer = client.get(f"http://127.0.0.1:{port}/api/seawall/slos")
                    break
                except httpx.TransportError:
                    assert process.poll() is None, process.stderr and process.stderr.read()
                    assert time.monotonic() < deadline, "seawall traces did not start"
                    time.sleep(0.1)
        assert answer.status_code == 200, answer.text
        assert answer.json()["control"] == control.url
    finally:
        process.terminate()
        process.wait(20)
        if process.stderr is not None:
            process.stderr.close()
