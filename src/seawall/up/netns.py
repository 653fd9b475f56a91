"""Network namespaces for ``seawall up --netns``, and real partitions between services.

**The layout** (sans-I/O: :class:`Layout`, :func:`choose_subnet`, :func:`free_slot`).
The namespaces of one state directory are named ``sw-<tag>-<n>``: ``tag`` is six hex
digits of a hash of the state directory's path (two ``up`` of two state directories
never share a name, and an ``up`` finds what an earlier ``up`` of the same directory
left behind), ``n`` the instance's slot, 1 to 63. Each ``up`` takes a /24 of
``10.213.0.0/16``, chosen from its tag (the next one along when an address or a
route of the machine, another ``up``'s included, is in it already):

* ``10.213.X.1/32`` on the root namespace's ``lo``, labelled ``lo:sw-<tag>``: the
  *gateway*, where the control plane and the trace collector listen. Every
  namespace reaches it by its default route, and so does the root namespace; unlike
  ``0.0.0.0`` it is not an address of the machine's own network interfaces.
* slot ``n``: a veth pair, ``sw-<tag>-<n>`` in the root namespace with
  ``10.213.X.(4n+1)/30``, and ``eth0`` in the namespace with ``10.213.X.(4n+2)/30``
  (the instance's *address*, where its sidecar's inbound and admin listeners are);
  ``lo`` up; the namespace's default route via the root side. IPv4 forwarding is
  switched on for these root sides only (``net.ipv4.conf.sw-<tag>-<n>.forwarding``:
  Linux forwards what arrives on an interface that forwards), so namespaces reach
  each other through the root namespace, and the machine's other interfaces forward
  nothing they did not before.

Names fit the kernel's 15 characters (``sw-1a2b3c-63``). Nothing is NATed: an
instance reaches the root namespace and the other instances, not other machines.

**The I/O** runs ``ip`` (iproute2), as root: :class:`Network` (one ``up``'s
namespaces: :meth:`Network.open` removes what an earlier ``up`` of the state
directory left, :meth:`Network.add`, :meth:`Network.remove`, :meth:`Network.close`),
:func:`cleanup` and :func:`leftovers`.

**Partitions**, for the chaos engine: :func:`partition` cuts every instance of one
service off from every instance of another, both ways, by routes of type
``prohibit`` inside each side's namespaces; :func:`heal` removes them;
:func:`partitions` reads back the ones in force. :func:`netns_available` says
whether this machine allows any of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from ..policy.errors import SeawallError

__all__ = [
    "Layout",
    "Member",
    "Network",
    "NetnsError",
    "Rule",
    "Slot",
    "choose_subnet",
    "cleanup",
    "cut_rules",
    "free_slot",
    "heal",
    "leftovers",
    "members",
    "netns_available",
    "partition",
    "partitions",
    "read_pairs",
    "tag_of",
]

RANGE = IPv4Network("10.213.0.0/16")
"""Where every ``up --netns`` takes its /24."""
MAX_SLOTS = 63
"""Instances per ``up``: the /30s of a /24 after the gateway's."""
PREFIX_LEN = 30
PROTO = "213"
"""The routing protocol number of a partition's routes: :func:`heal` removes those."""
STATE_FILE = "up.json"
_TIMEOUT = 10.0
"""Seconds any one ``ip`` command may take."""


class NetnsError(SeawallError, RuntimeError):
    """An ``ip`` command failed, or the namespaces cannot be laid out on this machine."""


# ---------------------------------------------------------------- layout (sans-I/O)


def tag_of(state_dir: Path) -> str:
    """Six hex digits naming the namespaces of ``state_dir`` (its resolved path)."""
    return hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:6]


@dataclass(frozen=True, slots=True)
class Slot:
    """One instance's namespace: its name (also its root-side veth's), its index, and
    the two ends of its /30."""

    name: str
    index: int
    root: IPv4Address
    """The root side's address: the namespace's default route."""
    address: IPv4Address
    """The namespace's address (its ``eth0``): where its sidecar listens."""


@dataclass(frozen=True, slots=True)
class Layout:
    """The names and addresses of one state directory's namespaces."""

    tag: str
    subnet: IPv4Network

    def __post_init__(self) -> None:
        if len(self.tag) != 6 or any(c not in "0123456789abcdef" for c in self.tag):
            raise ValueError(f"tag: six lowercase hex digits, got {self.tag!r}")
        if self.subnet.prefixlen != 24 or not self.subnet.subnet_of(RANGE):
            raise ValueError(f"subnet: a /24 of {RANGE}, got {self.subnet}")

    @property
    def prefix(self) -> str:
        """Every namespace's and root-side veth's name starts with it."""
        return f"sw-{self.tag}-"

    @property
    def gateway(self) -> IPv4Address:
        """The control plane's (and collector's) address, on the root namespace's ``lo``."""
        return self.subnet[1]

    @property
    def label(self) -> str:
        """The gateway address's label on ``lo``."""
        return f"lo:sw-{self.tag}"

    def slot(self, index: int) -> Slot:
        if not 1 <= index <= MAX_SLOTS:
            raise ValueError(f"slot: 1 to {MAX_SLOTS}, got {index}")
        base = 4 * index
        return Slot(f"{self.prefix}{index}", index, self.subnet[base + 1], self.subnet[base + 2])

    def owns(self, name: str) -> bool:
        """Whether a namespace or link of this name is one of this layout's."""
        rest = name[len(self.prefix) :]
        return name.startswith(self.prefix) and rest.isdigit()


def choose_subnet(tag: str, in_use: Iterable[IPv4Network]) -> IPv4Network:
    """The /24 of :data:`RANGE` for ``tag``: the one its digits name, else the next one
    along that no network in ``in_use`` (the machine's addresses and routes) overlaps.
    A network wider than :data:`RANGE` (a default route, a ``10.0.0.0/8`` elsewhere)
    is no obstacle: the namespaces' more specific routes win."""
    taken = [n for n in in_use if n.prefixlen >= RANGE.prefixlen and n.overlaps(RANGE)]
    subnets = list(RANGE.subnets(new_prefix=24))
    start = int(tag, 16) % len(subnets)
    for i in range(len(subnets)):
        candidate = subnets[(start + i) % len(subnets)]
        if not any(candidate.overlaps(n) for n in taken):
            return candidate
    raise NetnsError(f"no /24 of {RANGE} is free on this machine")


def free_slot(used: Collection[int]) -> int:
    """The lowest slot not in ``used``."""
    for index in range(1, MAX_SLOTS + 1):
        if index not in used:
            return index
    raise NetnsError(f"seawall up --netns runs at most {MAX_SLOTS} instances")


# ---------------------------------------------------------------- partitions (sans-I/O)


@dataclass(frozen=True, slots=True)
class Member:
    """An instance as ``up.json`` records it: its service, name, namespace, address."""

    service: str
    name: str
    netns: str
    address: str


@dataclass(frozen=True, slots=True)
class Rule:
    """A route of type ``prohibit`` to ``destination`` in namespace ``netns``."""

    netns: str
    destination: str
    description: str


def members(doc: Mapping[str, Any], state_dir: Path, *services: str) -> list[Member]:
    """The instances of an ``up.json`` (``doc``); ``ValueError`` when that ``up`` was not
    started with ``--netns``, or when one of ``services`` has no instance."""
    found = []
    for item in doc.get("instances") or []:
        if not isinstance(item, dict) or not item.get("netns"):
            raise ValueError(
                f"seawall up of {state_dir} was not started with --netns: "
                "partitions need each instance in a network namespace of its own"
            )
        found.append(Member(str(item["service"]), str(item["name"]), str(item["netns"]),
                            str(item["address"])))  # fmt: skip
    if not found:
        raise ValueError(f"seawall up of {state_dir} runs no instance")
    known = sorted({m.service for m in found})
    for service in services:
        if service not in known:
            raise ValueError(
                f"no service {service!r} runs in the seawall up of {state_dir}"
                f" (it runs: {', '.join(known)})"
            )
    return found


def cut_rules(found: Iterable[Member], a: str, b: str) -> list[Rule]:
    """The routes that cut every instance of ``a`` off from every instance of ``b``, both
    ways: in each one's namespace, a route to each of the other side's addresses."""
    if a == b:
        raise ValueError(f"a partition is between two services, got {a!r} twice")
    found = list(found)
    side_a = [m for m in found if m.service == a]
    side_b = [m for m in found if m.service == b]
    rules = []
    for here, there in [(x, y) for x in side_a for y in side_b] + [
        (y, x) for x in side_a for y in side_b
    ]:
        rules.append(Rule(here.netns, there.address,
                          f"{here.name} -/-> {there.name}: prohibit {there.address}/32"
                          f" in {here.netns}"))  # fmt: skip
    return rules


def read_pairs(
    found: Iterable[Member], routes: Mapping[str, Collection[str]]
) -> list[tuple[str, str]]:
    """The pairs of services cut apart, from each namespace's prohibited destinations
    (``routes``: namespace → addresses): each pair once, its names in alphabetical
    order; a pair is listed while any route of it is in force."""
    found = list(found)
    service_at = {m.address: m.service for m in found}
    pairs = set()
    for m in found:
        for address in routes.get(m.netns, ()):
            other = service_at.get(address)
            if other is not None and other != m.service:
                pairs.add((min(m.service, other), max(m.service, other)))
    return sorted(pairs)


# ---------------------------------------------------------------- ip (I/O)


def _ip(*args: str, netns: str | None = None) -> str:
    """``ip [-n NETNS] ARGS``' output; :class:`NetnsError` when it fails."""
    argv = ["ip", *(("-n", netns) if netns else ()), *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT, check=False)
    except FileNotFoundError:
        raise NetnsError("`ip` (iproute2) is not installed") from None
    except subprocess.TimeoutExpired:
        raise NetnsError(f"{' '.join(argv)}: no answer in {_TIMEOUT:g}s") from None
    if done.returncode != 0:
        why = done.stderr.strip() or f"exit status {done.returncode}"
        raise NetnsError(f"{' '.join(argv)}: {why}")
    return done.stdout


def _json(*args: str, netns: str | None = None) -> list[dict[str, Any]]:
    out = _ip("-j", *args, netns=netns).strip()
    doc = json.loads(out) if out else []
    return [d for d in doc if isinstance(d, dict)] if isinstance(doc, list) else []


def _namespaces() -> list[str]:
    return [str(d.get("name")) for d in _json("netns", "list")]


def _links() -> list[str]:
    return [str(d.get("ifname")) for d in _json("link", "show")]


def _gateway_addresses(label: str) -> list[str]:
    """``address/prefix`` of ``lo``'s addresses labelled ``label``."""
    found = []
    for link in _json("-4", "addr", "show", "dev", "lo"):
        for a in link.get("addr_info") or []:
            if a.get("label") == label:
                found.append(f"{a.get('local')}/{a.get('prefixlen')}")
    return found


def _networks_in_use() -> list[IPv4Network]:
    """The IPv4 networks of the root namespace's addresses and routes."""
    found = []
    for link in _json("-4", "addr", "show"):
        for a in link.get("addr_info") or []:
            with contextlib.suppress(ValueError, TypeError):
                found.append(IPv4Network(f"{a['local']}/{a['prefixlen']}", strict=False))
    for route in _json("-4", "route", "show"):
        dst = str(route.get("dst", "default"))
        if dst != "default":
            with contextlib.suppress(ValueError):
                found.append(IPv4Network(dst, strict=False))
    return found


def _forwarding(link: str) -> None:
    Path(f"/proc/sys/net/ipv4/conf/{link}/forwarding").write_text("1\n")


def leftovers(state_dir: Path) -> list[str]:
    """The namespaces, links and gateway addresses of ``state_dir`` on this machine
    (none once its ``up`` has stopped)."""
    tag = tag_of(state_dir)
    prefix = f"sw-{tag}-"
    found = [f"netns {n}" for n in _namespaces() if n.startswith(prefix)]
    found += [f"link {n}" for n in _links() if n.startswith(prefix)]
    found += [f"address {a} on lo" for a in _gateway_addresses(f"lo:sw-{tag}")]
    return found


def cleanup(state_dir: Path) -> list[str]:
    """Remove every namespace, veth and gateway address of ``state_dir``'s ``up``: what it
    removed. Its processes must have stopped (one still in a namespace keeps it alive,
    unnamed and cut off)."""
    tag = tag_of(state_dir)
    prefix = f"sw-{tag}-"
    removed = []
    for link in _links():  # the root side: its peer in the namespace goes with it
        if link.startswith(prefix):
            with contextlib.suppress(NetnsError):
                _ip("link", "del", link)
                removed.append(f"link {link}")
    for name in _namespaces():
        if name.startswith(prefix):
            with contextlib.suppress(NetnsError):
                _ip("netns", "del", name)
                removed.append(f"netns {name}")
    for address in _gateway_addresses(f"lo:sw-{tag}"):
        with contextlib.suppress(NetnsError):
            _ip("addr", "del", address, "dev", "lo")
            removed.append(f"address {address} on lo")
    return removed


class Network:
    """The namespaces of one ``seawall up --netns`` (I/O: it runs ``ip``)."""

    def __init__(self, state_dir: Path, layout: Layout) -> None:
        self.state_dir = state_dir
        self.layout = layout
        self.slots: dict[str, Slot] = {}
        """Instance name → its namespace."""

    @classmethod
    def open(cls, state_dir: Path) -> tuple[Network, list[str]]:
        """Remove what an earlier ``up`` of ``state_dir`` left, lay out a subnet, and put
        the gateway address on ``lo``: the network, and what was removed."""
        stale = cleanup(state_dir)
        tag = tag_of(state_dir)
        layout = Layout(tag, choose_subnet(tag, _networks_in_use()))
        _ip("addr", "add", f"{layout.gateway}/32", "dev", "lo", "label", layout.label)
        return cls(state_dir, layout), stale

    def add(self, instance: str) -> Slot:
        """A namespace for ``instance``, linked to the root namespace, its routes set."""
        slot = self.layout.slot(free_slot({s.index for s in self.slots.values()}))
        net = f"/{PREFIX_LEN}"
        try:
            _ip("netns", "add", slot.name)
            _ip("link", "add", slot.name, "type", "veth", "peer", "name", "eth0",
                "netns", slot.name)  # fmt: skip
            _ip("addr", "add", f"{slot.root}{net}", "dev", slot.name)
            _ip("link", "set", slot.name, "up")
            _forwarding(slot.name)
            _ip("link", "set", "lo", "up", netns=slot.name)
            _ip("addr", "add", f"{slot.address}{net}", "dev", "eth0", netns=slot.name)
            _ip("link", "set", "eth0", "up", netns=slot.name)
            _ip("route", "add", "default", "via", str(slot.root), netns=slot.name)
        except (NetnsError, OSError) as exc:
            self._delete(slot)
            raise NetnsError(f"{instance}: cannot make its namespace {slot.name}: {exc}") from exc
        self.slots[instance] = slot
        return slot

    def remove(self, instance: str) -> None:
        """``instance``'s namespace and veth, gone (its processes stopped first)."""
        slot = self.slots.pop(instance, None)
        if slot is not None:
            self._delete(slot)

    @staticmethod
    def _delete(slot: Slot) -> None:
        with contextlib.suppress(NetnsError):
            _ip("link", "del", slot.name)
        with contextlib.suppress(NetnsError):
            _ip("netns", "del", slot.name)

    def close(self) -> list[str]:
        """Everything of this state directory removed: what is left (nothing, normally)."""
        self.slots.clear()
        cleanup(self.state_dir)
        return leftovers(self.state_dir)


# ---------------------------------------------------------------- for the chaos engine


def netns_available() -> str | None:
    """``None`` when this machine lets ``seawall up --netns`` work (a throwaway namespace,
    with a veth pair inside it, is made and removed), else the reason, as a sentence."""
    if os.geteuid() != 0:
        return "network namespaces need root (seawall up --netns runs `ip netns` as root)"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    if not os.access("/proc/sys/net/ipv4/conf/all/forwarding", os.W_OK):
        return "/proc/sys/net/ipv4 is read-only here: IPv4 forwarding cannot be switched on"
    name = f"sw-probe-{os.getpid() % 100_000}"
    with contextlib.suppress(NetnsError):  # a probe of a killed process, same pid
        _ip("netns", "del", name)
    try:
        _ip("netns", "add", name)
    except NetnsError as exc:
        return f"cannot create a network namespace: {exc}"
    try:
        _ip("link", "add", "swp0", "type", "veth", "peer", "name", "swp1", netns=name)
    except NetnsError as exc:
        return f"cannot create a veth pair: {exc}"
    finally:
        with contextlib.suppress(NetnsError):
            _ip("netns", "del", name)
    return None


def _members(state_dir: Path, *services: str) -> list[Member]:
    try:
        doc = json.loads((state_dir / STATE_FILE).read_text())
    except OSError:
        raise ValueError(f"no seawall up runs for {state_dir} (no {STATE_FILE})") from None
    except ValueError:
        raise ValueError(f"{state_dir / STATE_FILE} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{state_dir / STATE_FILE} is not an object")
    return members(doc, state_dir, *services)


def _prohibited(netns: str) -> set[str]:
    """The destinations of the partition routes in ``netns`` (none if it is gone)."""
    try:
        routes = _json("route", "show", "type", "prohibit", "proto", PROTO, netns=netns)
    except NetnsError:
        return set()
    return {str(ipaddress.ip_network(str(r.get("dst")), strict=False).network_address)
            for r in routes if r.get("dst")}  # fmt: skip


def _reset(netns: str, address: str) -> int:
    """Abort the TCP connections in ``netns`` whose peer is ``address`` (``ss -K``): how
    many (-1: ``ss`` could not)."""
    argv = ["ip", "netns", "exec", netns, "ss", "-K", "-t", "-n", "-H", "dst", address]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return -1
    if done.returncode != 0:
        return -1
    return len([line for line in done.stdout.splitlines() if line.strip()])


def partition(state_dir: Path, a: str, b: str) -> list[str]:
    """Cut every instance of service ``a`` off from every instance of service ``b``, both
    ways; a description of each rule added (and of the connections reset).

    A rule is a route of type ``prohibit`` to the other side's address, inside each
    side's namespace: a connection attempt fails at once (``EACCES``), so a caller's
    sidecar answers 502/503 at once and its breaker and outlier detection see the
    failures, as behind a firewall that rejects. ``blackhole`` would drop the packets
    silently: every call would hang until its timeout, which tests the timeouts (they
    have experiments of their own) and makes every experiment slow. The TCP connections
    open between the two sides are reset (``ss -K``), else a pooled connection would
    hang until its timeout instead of failing. An instance started later (a changed
    ``run:``) is not cut.

    ``ValueError``: ``state_dir``'s ``up`` was not started with ``--netns``, or does not
    run ``a`` or ``b``. :class:`NetnsError`: an ``ip`` command failed.
    """
    rules = cut_rules(_members(state_dir, a, b), a, b)
    present = {ns: _prohibited(ns) for ns in {r.netns for r in rules}}
    done = []
    for rule in rules:
        if rule.destination in present[rule.netns]:
            done.append(f"{rule.description} (already)")
            continue
        _ip("route", "add", "prohibit", f"{rule.destination}/32", "proto", PROTO,
            netns=rule.netns)  # fmt: skip
        done.append(rule.description)
    for rule in rules:
        reset = _reset(rule.netns, rule.destination)
        if reset > 0:
            done.append(f"{reset} TCP connection(s) to {rule.destination} reset in {rule.netns}")
        elif reset < 0:
            done.append(f"open connections to {rule.destination} in {rule.netns} not reset"
                        " (ss -K failed): they fail at their timeouts")  # fmt: skip
    return done


def heal(state_dir: Path, a: str, b: str) -> list[str]:
    """Remove the rules :func:`partition` adds between ``a`` and ``b``: a description of
    each rule removed (none when there was no partition: healing twice is no error).
    ``ValueError`` and :class:`NetnsError` as for :func:`partition`."""
    rules = cut_rules(_members(state_dir, a, b), a, b)
    present = {ns: _prohibited(ns) for ns in {r.netns for r in rules}}
    done = []
    for rule in rules:
        if rule.destination not in present[rule.netns]:
            continue
        with contextlib.suppress(NetnsError):  # gone meanwhile: healed all the same
            _ip("route", "del", "prohibit", f"{rule.destination}/32", "proto", PROTO,
                netns=rule.netns)  # fmt: skip
            done.append(f"removed: {rule.description}")
    return done


def partitions(state_dir: Path) -> list[tuple[str, str]]:
    """The pairs of services cut apart now, read from the namespaces' routes: each pair
    once, its two names in alphabetical order. ``ValueError`` as for :func:`partition`."""
    found = _members(state_dir)
    routes = {m.netns: _prohibited(m.netns) for m in found}
    return read_pairs(found, routes)
