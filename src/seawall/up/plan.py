"""What ``seawall up`` runs for a mesh.yaml: sans-I/O, told the config and free ports.

Every service with ``run:`` gets ``run.instances`` instances, each an app beside its
own sidecar. The first instance of a service takes the ports mesh.yaml gives it
(``port`` and ``sidecar.*``); the others take ports :func:`plan` is handed by its
``allocate`` function. An instance is named after its service (``orders``), then
``orders-2``, ``orders-3``...

Each process is a :class:`ProcessSpec`: its argv, environment and working directory,
what says it is ready, and the order things start in: the control plane first, then
each instance's sidecar and its app. They stop in the reverse order.

With ``seawall up --netns`` an instance also has a network namespace and an address
(:mod:`seawall.up.netns`): its app and its sidecar run in that namespace and talk over
its ``127.0.0.1`` as before, while the sidecar's inbound and admin listeners are on
the address, which it registers (``--address``, ``--listen-address``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..config.model import MeshConfig, RunConfig

__all__ = ["Instance", "ProcessSpec", "external_specs", "instances", "plan", "process_specs"]

Kind = Literal["control", "external", "sidecar", "app"]


@dataclass(frozen=True, slots=True)
class Instance:
    """One instance of a service: its app and its sidecar, on their ports."""

    service: str
    name: str
    """``orders``, then ``orders-2``...: the names of its processes and logs."""
    index: int
    subset: str | None
    app_port: int
    inbound: int
    outbound: int
    admin: int
    run: RunConfig
    netns: str | None = None
    """Its network namespace (``seawall up --netns``), else ``None``."""
    address: str = "127.0.0.1"
    """Where its sidecar's inbound and admin listeners are, from outside."""


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """One process ``seawall up`` runs and keeps running."""

    name: str
    """``control``, ``sidecar:orders-2``, ``app:orders-2``: its log prefix and file."""
    kind: Kind
    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str] = field(default_factory=dict)
    """Added to the environment ``seawall up`` runs in."""
    ready: str | None = None
    """``http://...``: a GET answered 200; ``tcp://host:port``: a port that takes a
    connection; ``None``: started is ready."""
    service: str | None = None
    instance: str | None = None
    netns: str | None = None
    """The network namespace it runs in (``ip netns exec``); ``None``: the root one.
    A ``tcp://`` readiness is then checked inside it."""


def instances(config: MeshConfig, allocate: Callable[[], int]) -> list[Instance]:
    """Every instance of every service that has ``run:`` (then of each of its subsets
    with a ``run:`` of their own: ``orders-v2``, ``orders-v2-2``...), in mesh.yaml's
    order; ports beyond the file's come from ``allocate``."""
    found = []
    for service, svc in config.services.items():
        groups = [(service, svc.run, svc.run.subset if svc.run else None, True)]
        groups += [(f"{service}-{name}", sub.run, name, False)
                   for name, sub in svc.subsets.items()]  # fmt: skip
        for base, run, subset, own_ports in groups:
            if run is None:
                continue
            for index in range(1, run.instances + 1):
                if index == 1 and own_ports:
                    ports = (svc.port, svc.sidecar.inbound, svc.sidecar.outbound,
                             svc.sidecar.admin)  # fmt: skip
                else:
                    ports = (allocate(), allocate(), allocate(), allocate())
                name = base if index == 1 else f"{base}-{index}"
                found.append(Instance(service, name, index, subset, *ports, run))
    return found


def process_specs(
    instance: Instance,
    *,
    control_url: str,
    state_dir: Path,
    base_dir: Path,
    mesh_file: Path | None = None,
    python: str = sys.executable,
    traces_endpoint: str | None = None,
) -> tuple[ProcessSpec, ProcessSpec]:
    """An instance's sidecar (managed by the control plane, on the instance's ports) and
    its app (told its port, its sidecar and ``mesh_file`` by its environment), both in
    the instance's network namespace when it has one; ``traces_endpoint``: where both
    send their spans (``--traces-endpoint``, ``SEAWALL_TRACES_ENDPOINT``), when not
    where mesh.yaml says."""
    sidecar_argv = [
        python, "-P", "-m", "seawall", "sidecar", "--service", instance.service,
        "--control", control_url, "--state-dir", str(state_dir / "sidecars" / instance.name),
        "--app-port", str(instance.app_port), "--inbound-port", str(instance.inbound),
        "--outbound-port", str(instance.outbound), "--admin-port", str(instance.admin),
    ]  # fmt: skip
    if instance.netns is not None:
        sidecar_argv += ["--address", instance.address, "--listen-address", instance.address]
    if traces_endpoint is not None:
        sidecar_argv += ["--traces-endpoint", traces_endpoint]
    if instance.subset is not None:
        sidecar_argv += ["--subset", instance.subset]
    sidecar = ProcessSpec(
        f"sidecar:{instance.name}",
        "sidecar",
        tuple(sidecar_argv),
        base_dir,
        ready=f"http://{instance.address}:{instance.admin}/ready",
        service=instance.service,
        instance=instance.name,
        netns=instance.netns,
    )
    run = instance.run
    proxy = f"http://127.0.0.1:{instance.outbound}"
    env = {
        "SEAWALL_SERVICE": instance.service,
        "SEAWALL_INSTANCE": instance.name,
        "SEAWALL_APP_PORT": str(instance.app_port),
        "SEAWALL_OUTBOUND_PORT": str(instance.outbound),
        "HTTP_PROXY": proxy,
        "http_proxy": proxy,
        "NO_PROXY": "",
        "PYTHONUNBUFFERED": "1",
        **({"SEAWALL_SUBSET": instance.subset} if instance.subset else {}),
        **({"SEAWALL_MESH_FILE": str(mesh_file)} if mesh_file is not None else {}),
        **({"SEAWALL_TRACES_ENDPOINT": traces_endpoint} if traces_endpoint else {}),
        **run.env,
    }
    cwd = base_dir if run.cwd is None else (base_dir / run.cwd)
    # `python` is the Python seawall runs on (its virtual environment, where the app's
    # packages are), whatever PATH says
    command = run.command
    if command[0] in ("python", "python3"):
        command = (python, *command[1:])
    app = ProcessSpec(
        f"app:{instance.name}",
        "app",
        command,
        cwd,
        env,
        ready=f"tcp://127.0.0.1:{instance.app_port}",
        service=instance.service,
        instance=instance.name,
        netns=instance.netns,
    )
    return sidecar, app


def external_specs(
    config: MeshConfig, base_dir: Path, python: str = sys.executable
) -> list[ProcessSpec]:
    """The stand-ins of external hosts (``external.<name>.run``): started after the control
    plane and before the services (their sidecars reach them at once), with no sidecar;
    ready when ``host:port`` takes a connection."""
    specs = []
    for name, ext in config.external.items():
        run = ext.run
        if run is None:
            continue
        command = run.command
        if command[0] in ("python", "python3"):
            command = (python, *command[1:])
        host = "127.0.0.1" if ext.host == "localhost" else ext.host
        env = {"SEAWALL_EXTERNAL": name, "PYTHONUNBUFFERED": "1", **run.env}
        cwd = base_dir if run.cwd is None else (base_dir / run.cwd)
        specs.append(ProcessSpec(f"external:{name}", "external", command, cwd, env,
                                 ready=f"tcp://{host}:{ext.effective_port()}"))  # fmt: skip
    return specs


def plan(
    config: MeshConfig,
    *,
    control_url: str,
    state_dir: Path,
    base_dir: Path,
    allocate: Callable[[], int],
    mesh_file: Path | None = None,
    python: str = sys.executable,
) -> tuple[list[Instance], list[ProcessSpec]]:
    """The instances, and every instance's processes in the order they start (the
    control plane is started apart, before them)."""
    found = instances(config, allocate)
    specs: list[ProcessSpec] = []
    for inst in found:
        specs += process_specs(inst, control_url=control_url, state_dir=state_dir,
                               base_dir=base_dir, mesh_file=mesh_file, python=python)  # fmt: skip
    return found, specs
