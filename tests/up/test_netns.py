"""``seawall up --netns`` and partitions between services (:mod:`seawall.up.netns`).

The layout and the partition rules are planned without I/O and checked here on any
machine. The rest runs for real where network namespaces are allowed (root, iproute2;
else skipped with :func:`~seawall.up.netns.netns_available`'s reason): a mesh of two
services, each instance in a namespace of its own; a call from one to the other
through their sidecars; a partition that makes it fail at once, read back from the
namespaces; a heal that makes it work again; and at the stop, no namespace, veth or
address of the state directory left.

Bounded: every wait has a deadline; the traffic stays on the namespaces made here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_up import ROOT, wait_for
from tiny import APP, PORTS, free_ports, kill_what_is_left, mesh_yaml

from seawall.config import parse_mesh
from seawall.proxy.managed import LinkOptions, instance_spec
from seawall.proxy.spec import sidecar_spec
from seawall.up import netns
from seawall.up.netns import Layout, Member, NetnsError
from seawall.up.plan import instances, process_specs
from seawall.up.processes import listening

# ---------------------------------------------------------------- sans-I/O


def test_the_layout_names_fit_the_kernel_and_each_slot_has_its_own_30() -> None:
    layout = Layout("1a2b3c", IPv4Network("10.213.7.0/24"))
    assert (layout.prefix, str(layout.gateway), layout.label) == (
        "sw-1a2b3c-", "10.213.7.1", "lo:sw-1a2b3c",
    )  # fmt: skip
    first, last = layout.slot(1), layout.slot(netns.MAX_SLOTS)
    assert (first.name, str(first.root), str(first.address)) == (
        "sw-1a2b3c-1", "10.213.7.5", "10.213.7.6",
    )  # fmt: skip
    assert (last.name, str(last.root), str(last.address)) == (
        "sw-1a2b3c-63", "10.213.7.253", "10.213.7.254",
    )  # fmt: skip
    assert len(last.name) <= 15
    assert len(layout.label) <= 15
    assert layout.owns("sw-1a2b3c-12")
    assert not layout.owns("sw-1a2b3c-gw")
    assert not layout.owns("sw-1a2b3d-1")
    with pytest.raises(ValueError, match="slot"):
        layout.slot(64)
    with pytest.raises(ValueError, match="tag"):
        Layout("xyz", IPv4Network("10.213.7.0/24"))
    with pytest.raises(ValueError, match="subnet"):
        Layout("1a2b3c", IPv4Network("10.214.7.0/24"))


def test_a_subnet_is_chosen_by_the_tag_and_skips_the_ones_in_use() -> None:
    tag = "000107"  # 263 % 256: the 7th /24
    assert netns.choose_subnet(tag, []) == IPv4Network("10.213.7.0/24")
    in_use = [IPv4Network("10.213.7.4/30"), IPv4Network("10.0.0.0/8"),
              IPv4Network("0.0.0.0/0"), IPv4Network("10.213.8.1/32")]  # fmt: skip
    assert netns.choose_subnet(tag, in_use) == IPv4Network("10.213.9.0/24")
    assert netns.choose_subnet("0000ff", [IPv4Network("10.213.255.0/24")]) == IPv4Network(
        "10.213.0.0/24"
    )  # round the range
    with pytest.raises(NetnsError, match="no /24"):
        netns.choose_subnet(tag, [IPv4Network("10.213.0.0/16")])


def test_slots_and_tags() -> None:
    assert netns.free_slot(set()) == 1
    assert netns.free_slot({1, 2, 4}) == 3
    with pytest.raises(NetnsError, match="at most 63"):
        netns.free_slot(set(range(1, 64)))
    assert netns.tag_of(Path("/a/state")) == netns.tag_of(Path("/a/./state"))
    assert netns.tag_of(Path("/a/state")) != netns.tag_of(Path("/b/state"))


def _doc(*items: tuple[str, str, str | None, str]) -> dict[str, Any]:
    return {"instances": [{"service": s, "name": n, "netns": ns, "address": a}
                          for s, n, ns, a in items]}  # fmt: skip


DOC = _doc(("a", "a", "sw-x-1", "10.213.7.6"), ("b", "b", "sw-x-2", "10.213.7.10"),
           ("b", "b-2", "sw-x-3", "10.213.7.14"), ("c", "c", "sw-x-4", "10.213.7.18"))  # fmt: skip


def test_a_cut_is_a_route_each_way_between_every_pair_of_instances() -> None:
    found = netns.members(DOC, Path("s"), "a", "b")
    rules = netns.cut_rules(found, "a", "b")
    assert [(r.netns, r.destination) for r in rules] == [
        ("sw-x-1", "10.213.7.10"), ("sw-x-1", "10.213.7.14"),
        ("sw-x-2", "10.213.7.6"), ("sw-x-3", "10.213.7.6"),
    ]  # fmt: skip
    assert rules[0].description == "a -/-> b: prohibit 10.213.7.10/32 in sw-x-1"
    with pytest.raises(ValueError, match="two services"):
        netns.cut_rules(found, "a", "a")
    # read back: a pair while any of its routes is there; c's unknown route is no pair
    routes = {"sw-x-2": {"10.213.7.6"}, "sw-x-4": {"10.213.7.250"}}
    assert netns.read_pairs(found, routes) == [("a", "b")]
    routes = {"sw-x-4": {"10.213.7.6"}, "sw-x-1": {"10.213.7.18", "10.213.7.10"}}
    assert netns.read_pairs(found, routes) == [("a", "b"), ("a", "c")]
    assert netns.read_pairs(found, {}) == []


def test_partitions_refuse_a_mesh_without_netns_or_an_unknown_service(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no seawall up runs"):
        netns.partition(tmp_path, "a", "b")
    plain = _doc(("a", "a", None, "127.0.0.1"), ("b", "b", None, "127.0.0.1"))
    (tmp_path / "up.json").write_text(json.dumps(plain))
    with pytest.raises(ValueError, match="not started with --netns"):
        netns.partition(tmp_path, "a", "b")
    with pytest.raises(ValueError, match="not started with --netns"):
        netns.partitions(tmp_path)
    (tmp_path / "up.json").write_text(json.dumps(DOC))
    with pytest.raises(ValueError, match=r"no service 'd' runs .* \(it runs: a, b, c\)"):
        netns.heal(tmp_path, "a", "d")
    assert netns.members(DOC, tmp_path) == [
        Member("a", "a", "sw-x-1", "10.213.7.6"), Member("b", "b", "sw-x-2", "10.213.7.10"),
        Member("b", "b-2", "sw-x-3", "10.213.7.14"), Member("c", "c", "sw-x-4", "10.213.7.18"),
    ]  # fmt: skip


def test_an_instance_in_a_namespace_listens_on_its_address_and_runs_in_it(tmp_path: Path) -> None:
    config = parse_mesh({"mesh": "m", "services": {"a": {
        "port": 8001, "sidecar": {"inbound": 18001, "outbound": 15001, "admin": 19001},
        "run": {"command": "python app.py", "subset": "v1"}, "subsets": {"v1": {}}}}})  # fmt: skip
    (inst,) = instances(config, lambda: 0)
    assert (inst.netns, inst.address) == (None, "127.0.0.1")
    inst = dataclasses.replace(inst, netns="sw-1a2b3c-1", address="10.213.7.6")
    trace = "http://10.213.7.1:4318/v1/traces"
    sidecar, app = process_specs(inst, control_url="http://10.213.7.1:7600", state_dir=tmp_path,
                                 base_dir=tmp_path, python="py", traces_endpoint=trace)  # fmt: skip
    argv = list(sidecar.argv)
    assert argv[argv.index("--address") + 1] == "10.213.7.6"
    assert argv[argv.index("--listen-address") + 1] == "10.213.7.6"
    assert argv[argv.index("--traces-endpoint") + 1] == trace
    assert argv[-2:] == ["--subset", "v1"]
    assert sidecar.ready == "http://10.213.7.6:19001/ready"
    assert (sidecar.netns, app.netns) == ("sw-1a2b3c-1", "sw-1a2b3c-1")
    # the app talks to its sidecar over the namespace's own loopback, as without --netns
    assert app.env["HTTP_PROXY"] == "http://127.0.0.1:15001"
    assert app.ready == "tcp://127.0.0.1:8001"
    assert app.env["SEAWALL_TRACES_ENDPOINT"] == trace


def test_the_sidecar_binds_and_exports_where_it_is_told() -> None:
    config = parse_mesh({"mesh": "m", "services": {"a": {
        "port": 8001, "sidecar": {"inbound": 18001, "outbound": 15001, "admin": 19001}}},
        "tracing": {"endpoint": "http://127.0.0.1:4318/v1/traces"}})  # fmt: skip
    plain = instance_spec(config, "a", LinkOptions(["http://c"], "t", "s"))
    assert plain == sidecar_spec(config, "a")
    told = LinkOptions(["http://c"], "t", "s", listen="10.213.7.6",
                       traces_endpoint="http://10.213.7.1:4318/v1/traces")  # fmt: skip
    spec = instance_spec(config, "a", told)
    assert spec["listeners"]["inbound"] == ["10.213.7.6", 18001]
    assert spec["listeners"]["admin"] == ["10.213.7.6", 19001]
    assert spec["listeners"]["outbound"] == ["127.0.0.1", 15001]  # the app's, inside
    assert spec["tracing"]["endpoint"] == "http://10.213.7.1:4318/v1/traces"


def test_listening_reads_the_sockets_of_a_process_namespace() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert not listening(os.getpid(), port)
        s.listen()
        assert listening(os.getpid(), port)
    assert not listening(os.getpid(), port)


# ---------------------------------------------------------------- for real

REASON = netns.netns_available()


def ours(prefix: str) -> list[str]:
    """Our namespaces and links still on the machine."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                           check=True, timeout=10).stdout.split()  # fmt: skip
    links = json.loads(subprocess.run(["ip", "-j", "link", "show"], capture_output=True,
                                      text=True, check=True, timeout=10).stdout)  # fmt: skip
    return [n for n in names if n.startswith(prefix)] + [
        str(link["ifname"]) for link in links if str(link["ifname"]).startswith(prefix)
    ]


class NetMesh:
    """Services a and b, one instance each, on free ports; a local collector."""

    def __init__(self, folder: Path) -> None:
        p = free_ports(PORTS)
        self.folder, self.file, self.state = folder, folder / "mesh.yaml", folder / "state"
        self.control, self.collector = p[8], p[9]
        self.file.write_text(mesh_yaml(p))
        self.prefix = f"sw-{netns.tag_of(self.state)}-"

    def edit(self, old: str, new: str) -> None:
        text = self.file.read_text()
        assert old in text
        self.file.write_text(text.replace(old, new))

    def doc(self) -> dict[str, Any]:
        try:
            doc = json.loads((self.state / "up.json").read_text())
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def instance(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = next(i for i in self.doc()["instances"] if i["name"] == name)
        return found

    def call(self, path: str) -> httpx.Response:
        a = self.instance("a")
        url = f"http://{a['address']}:{a['inbound']}{path}"
        return httpx.get(url, timeout=10, trust_env=False)


@pytest.fixture
def net_mesh(tmp_path: Path) -> Iterator[NetMesh]:
    m = NetMesh(tmp_path)
    yield m
    kill_what_is_left(m.doc())
    netns.cleanup(m.state)


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
@pytest.mark.timeout(90)
def test_up_netns_partitions_heals_and_removes_every_namespace(net_mesh: NetMesh) -> None:
    m = net_mesh
    # a namespace an earlier, killed `up` of this state directory left
    subprocess.run(["ip", "netns", "add", f"{m.prefix}9"], check=True, timeout=10)
    out = m.folder / "up.out"
    started = time.monotonic()
    with out.open("w") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "seawall", "up", "-f", str(m.file), "--state-dir",
             str(m.state), "--control-port", str(m.control), "--status-interval", "0",
             "--netns"],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
    try:
        wait_for("ready", lambda: "| ready: 2 instance(s) of 2 service(s)" in out.read_text(), 40)
        ready = time.monotonic() - started
        text = out.read_text()
        assert f"removed the stale netns {m.prefix}9" in text
        assert sorted(ours(m.prefix)) == sorted([f"{m.prefix}1", f"{m.prefix}2"] * 2)
        doc = m.doc()
        gateway = doc["network"]["gateway"]
        assert doc["control_url"] == f"http://{gateway}:{m.control}"
        a, b = m.instance("a"), m.instance("b")
        assert (a["netns"], b["netns"]) == (f"{m.prefix}1", f"{m.prefix}2")
        assert a["address"] != b["address"]
        assert a["address"].startswith("10.213.")

        # through the mesh: a's sidecar, a's app, a's sidecar again, b's sidecar, b's app
        r = m.call("/call/b")
        assert r.status_code == 200, r.text
        assert r.json()["instance"] == "b"
        ps = subprocess.run(
            [sys.executable, "-m", "seawall", "ps", "--state-dir", str(m.state)],
            capture_output=True, text=True, timeout=30, cwd=ROOT, check=False,
        )  # fmt: skip
        assert ps.returncode == 0, ps.stdout + ps.stderr
        assert "ADDRESS" in ps.stdout
        assert a["address"] in ps.stdout
        assert b["address"] in ps.stdout
        # the sidecars' spans reach the collector outside their namespaces
        services = f"http://{gateway}:{m.collector}/api/services"
        wait_for("spans of a and b", lambda: {"a", "b"} <= set(
            httpx.get(services, timeout=2, trust_env=False).json()["data"]), 10)  # fmt: skip

        # cut: the call fails at once, with the sidecar's answer
        rules = netns.partition(m.state, "a", "b")
        assert [x for x in rules if "prohibit" in x] == [
            f"a -/-> b: prohibit {b['address']}/32 in {a['netns']}",
            f"b -/-> a: prohibit {a['address']}/32 in {b['netns']}",
        ]
        assert netns.partitions(m.state) == [("a", "b")]
        for _ in range(3):
            t = time.monotonic()
            r = m.call("/call/b")
            took = time.monotonic() - t
            assert r.status_code in (502, 503), r.text
            assert took < 5.0, f"a partitioned call took {took:.2f}s"
        # a partition made twice is one partition
        assert all(x.endswith("(already)") for x in netns.partition(m.state, "b", "a")
                   if "prohibit" in x)  # fmt: skip

        healed = netns.heal(m.state, "b", "a")
        assert len(healed) == 2
        assert all(x.startswith("removed: ") for x in healed)
        assert netns.heal(m.state, "a", "b") == []  # healing twice is no error
        assert netns.partitions(m.state) == []
        wait_for("calls through again", lambda: m.call("/call/b").status_code == 200, 15)

        # b's run changed: b starts again, in a namespace made anew, a's stays
        m.edit(f"run: {sys.executable} {APP}\npolicies", f"run: {{command: {sys.executable} {APP},"
               " env: {GREETING: hey}}\npolicies")  # fmt: skip
        wait_for("b says hey", lambda: m.call("/call/b").json()["greeting"] == "hey", 30)
        assert m.instance("b")["netns"] == b["netns"]
        assert m.instance("a")["netns"] == a["netns"]
        assert sorted(ours(m.prefix)) == sorted([a["netns"], b["netns"]] * 2)
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(60)
    text = out.read_text()
    assert code == 0, text[-3000:]
    assert "| stopped; no process is left; every network namespace removed" in text
    assert ours(m.prefix) == []
    assert netns.leftovers(m.state) == []
    assert not (m.state / "up.json").exists()
    print(f"ready in {ready:.1f}s, all in {time.monotonic() - started:.1f}s")
