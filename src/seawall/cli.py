"""The ``seawall`` command line.

* ``seawall sidecar --service NAME (--config mesh.yaml | --control URL)`` runs
  the sidecar proxy of one service instance (see :mod:`seawall.proxy.sidecar`);
* ``seawall control`` runs a control-plane replica (see
  :mod:`seawall.control.server`);
* ``seawall apply -f mesh.yaml``, ``seawall status``, ``seawall services`` and
  ``seawall certs`` talk to it (see :mod:`seawall.control.commands`);
* ``seawall traces [--config mesh.yaml]`` runs the trace collector, store and UI,
  and ``seawall traces drift`` lists the edges whose latency drifted (see
  :mod:`seawall.telemetry.collector`);
* ``seawall check -f mesh.yaml [--service NAME] [--json]`` validates a config
  offline, with no control plane and no sidecar (see :mod:`seawall.config.report`):
  exit 0 valid, 1 invalid, 2 unreadable.

The commands need the ``mesh`` extra (``pip install 'seawall[mesh]'``). Without
it, a command exits 2 with one line naming what is missing and what to install,
not a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["main"]

# The optional dependencies the commands import, by top-level module name: the
# distribution that provides the module, and the extra of seawall's that pulls it
# in. Every command needs `mesh` (even `apply` needs the config's YAML and
# schema), so httpx points there too, not at the `httpx` extra of the client.
_OPTIONAL: dict[str, tuple[str, str]] = {
    "yaml": ("PyYAML", "mesh"),
    "pydantic": ("pydantic", "mesh"),
    "pydantic_core": ("pydantic-core", "mesh"),  # installed with pydantic
    "annotated_types": ("annotated-types", "mesh"),  # installed with pydantic
    "uvloop": ("uvloop", "mesh"),
    "httptools": ("httptools", "mesh"),
    "cryptography": ("cryptography", "mesh"),
    "httpx": ("httpx", "mesh"),
}


def _missing_module(prog: str, exc: ModuleNotFoundError) -> str:
    """The one line telling what ``exc`` says is missing, and how to get it."""
    name = exc.name or ""
    top = name.partition(".")[0]
    if top in _OPTIONAL:
        distribution, extra = _OPTIONAL[top]
        return (
            f"{prog}: needs {distribution}, which is not installed: pip install 'seawall[{extra}]'"
        )
    if top == "seawall":
        return (
            f"{prog}: cannot import {name}: this seawall installation is incomplete; reinstall it"
        )
    if name:
        return (
            f"{prog}: needs the Python module {name!r}, which is not installed "
            "(`pip check` names the package that requires it)"
        )
    return f"{prog}: a module is missing ({exc}): pip install 'seawall[mesh]'"


def _positive_seconds(text: str) -> float:
    from .config import parse_duration  # noqa: PLC0415

    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _slo_resolution(text: str) -> float:
    value = _positive_seconds(text)
    if 600 % value:
        raise argparse.ArgumentTypeError(f"must divide 10m (1s, 5s, 1m...), got {text!r}")
    return value


def _seconds_or_zero(text: str) -> float:
    return 0.0 if text.strip() in ("0", "0s") else _positive_seconds(text)


def _compose(args: argparse.Namespace) -> int:
    """``seawall up``, ``down``, ``ps`` and ``logs`` (:mod:`seawall.up.cli`)."""
    from .up import cli as compose  # noqa: PLC0415
    from .up.runner import UpOptions  # noqa: PLC0415

    state = Path(args.state_dir)
    if args.command == "down":
        return compose.down(state)
    if args.command == "ps":
        return compose.ps(state, as_json=args.json, watch=args.watch)
    if args.command == "logs":
        return compose.logs(state, args.service, follow=args.follow)
    options = UpOptions(
        Path(args.file),
        state,
        control_port=args.control_port,
        colour=sys.stdout.isatty(),
        status_interval=args.status_interval,
        slo_interval=args.slo_interval,
        slo_resolution=args.slo_resolution,
        netns=args.netns,
    )
    return compose.up(options, detach=args.detach)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 1-65535, got {text!r}")
    return int(text)


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"must be KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def _client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--control", help="control-plane URL (default: $SEAWALL_CONTROL, state dir)")
    p.add_argument("--token", help="admin token (default: $SEAWALL_TOKEN, state dir)")
    p.add_argument("--state-dir", help="state directory (default: $SEAWALL_STATE_DIR, .seawall)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seawall", description="High-availability toolkit.")
    commands = parser.add_subparsers(dest="command", required=True)

    sidecar = commands.add_parser("sidecar", help="run the sidecar proxy of one service")
    sidecar.add_argument("--config", help="path to mesh.yaml (static mode, or a bootstrap)")
    sidecar.add_argument("--service", required=True, help="the service this sidecar serves")
    sidecar.add_argument(
        "--workers",
        type=int,
        default=None,
        help="threads of the Rust core serving requests (default: sidecar.workers)",
    )
    sidecar.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="the event log on stderr: text lines (default) or JSON lines",
    )
    link = sidecar.add_argument_group("control plane (instead of, or on top of, --config)")
    link.add_argument("--control", help="control-plane URL(s), comma-separated replicas")
    link.add_argument("--join-token", help="join token of the service ($SEAWALL_JOIN_TOKEN)")
    link.add_argument("--state-dir", help="where the last snapshot and the identity are kept")
    link.add_argument("--subset", help="the subset this instance belongs to (e.g. v2)")
    link.add_argument(
        "--label",
        action="append",
        default=[],
        type=_label,
        metavar="KEY=VALUE",
        help="metadata registered with the instance (repeatable): zone=a, pod=...",
    )
    link.add_argument("--address", help="address other sidecars reach this one at")
    link.add_argument(
        "--listen-address",
        metavar="ADDRESS",
        help="the inbound and admin listeners' address (default: the service's host, 127.0.0.1)",
    )
    link.add_argument(
        "--traces-endpoint", metavar="URL", help="export spans there instead of tracing's endpoint"
    )
    link.add_argument("--app-port", type=_port, help="this instance's app port")
    link.add_argument("--inbound-port", type=_port, help="this instance's inbound port")
    link.add_argument("--outbound-port", type=_port, help="this instance's outbound port")
    link.add_argument("--admin-port", type=_port, help="this instance's admin port")
    link.add_argument("--lease-ttl", type=_positive_seconds, default=10.0, help="default 10s")

    up = commands.add_parser(
        "up",
        help="run the whole mesh of mesh.yaml: control plane, sidecars, apps",
        description="Start the control plane, apply mesh.yaml, start every service's "
        "`run:` instances beside their sidecars, and keep them running until Ctrl-C",
    )
    up.add_argument("-f", "--file", default="mesh.yaml", help="mesh.yaml (default: ./mesh.yaml)")
    up.add_argument("--state-dir", default=".seawall", help="default .seawall (kept: CA, store)")
    up.add_argument("--control-port", type=_port, default=7600, help="default 7600")
    up.add_argument("--detach", "-d", action="store_true", help="run in the background")
    up.add_argument(
        "--netns",
        action="store_true",
        help="each instance in a network namespace of its own (root, iproute2; docs/up.md)",
    )
    up.add_argument(
        "--status-interval",
        type=_seconds_or_zero,
        default=30.0,
        help="seconds between two status tables (0: only when ready; default 30s)",
    )
    up.add_argument(
        "--slo-interval", type=_positive_seconds, help="the control plane's (default 10s)"
    )
    up.add_argument(
        "--slo-resolution", type=_slo_resolution, help="the control plane's (default 1m)"
    )
    down = commands.add_parser("down", help="stop what `seawall up` runs")
    down.add_argument("--state-dir", default=".seawall")
    ps = commands.add_parser("ps", help="what `seawall up` runs, and each instance's state")
    ps.add_argument("--state-dir", default=".seawall")
    ps.add_argument("--json", action="store_true")
    ps.add_argument(
        "--watch",
        "-w",
        nargs="?",
        const=1.0,
        type=_positive_seconds,
        metavar="SECONDS",
        help="a live table (requests/s, errors/s), drawn again every SECONDS (default 1s)",
    )
    logs = commands.add_parser("logs", help="the logs of a service that `seawall up` runs")
    logs.add_argument("service", help="a service, or `control`")
    logs.add_argument("--state-dir", default=".seawall")
    logs.add_argument("-f", "--follow", action="store_true", help="follow them until Ctrl-C")

    chaos = commands.add_parser(
        "chaos",
        help="run chaos experiments against the mesh `seawall up` runs",
        description="An experiment checks a steady-state hypothesis, injects faults, "
        "checks it again, rolls every fault back and checks it after: docs/chaos.md",
    )
    chaos_verbs = chaos.add_subparsers(dest="chaos_command", required=True, metavar="VERB")
    chaos_run = chaos_verbs.add_parser("run", help="run an experiment file")
    chaos_run.add_argument("experiment", help="EXPERIMENT.yaml")
    chaos_run.add_argument("--state-dir", default=".seawall", help="the `seawall up` it runs on")
    chaos_run.add_argument(
        "--fast", action="store_true", help="every duration scaled by the file's fast.scale"
    )
    chaos_run.add_argument("--json", metavar="FILE", help="write the report as JSON there")
    chaos_run.add_argument("--markdown", metavar="FILE", help="write the report as Markdown there")
    chaos_run.add_argument(
        "--netns", action="store_true", help="partitions by network namespaces (see docs)"
    )
    chaos_check = chaos_verbs.add_parser("validate", help="validate experiment files")
    chaos_check.add_argument("experiment", nargs="+", help="EXPERIMENT.yaml ...")
    chaos_check.add_argument("--state-dir", default=".seawall", help="check services against it")
    chaos_status = chaos_verbs.add_parser("status", help="faults still applied (left over)")
    chaos_status.add_argument("--state-dir", default=".seawall")
    chaos_status.add_argument(
        "--rollback", action="store_true", help="roll every leftover fault back"
    )

    control = commands.add_parser("control", help="run a control-plane replica")
    control.add_argument(
        "--state-dir", help="state directory (default: $SEAWALL_STATE_DIR, .seawall)"
    )
    control.add_argument(
        "--listen", default="127.0.0.1:7600", help="HOST:PORT (default %(default)s)"
    )
    control.add_argument("--store", choices=["sqlite", "etcd"], default="sqlite")
    control.add_argument("--etcd", help="etcd client URL(s), comma-separated")
    control.add_argument("--etcd-prefix", default="/seawall/", help="key prefix in etcd")
    control.add_argument("--ca-cert", help="CA certificate file (default: created in state dir)")
    control.add_argument("--ca-key", help="CA private key file")
    control.add_argument(
        "--cert-ttl", type=_positive_seconds, default=24 * 3600.0, help="default 24h"
    )
    control.add_argument(
        "--slo-interval",
        type=_positive_seconds,
        default=10.0,
        help="how often the SLOs' sidecars are scraped and evaluated (default 10s)",
    )
    control.add_argument(
        "--slo-resolution",
        type=_slo_resolution,
        default=60.0,
        help="seconds each stored SLO bucket spans, the finest a burn-rate window can "
        "tell (default 1m; a divisor of 10m; finer for demos and tests, at more storage)",
    )
    control.add_argument(
        "--traces",
        metavar="HOST:PORT",
        help="also serve `seawall traces` there (OTLP, the query APIs, the UI), "
        "its store in the state directory",
    )

    traces = commands.add_parser(
        "traces",
        help="the trace collector, store, query APIs and UI",
        description="Run the collector of tracing.collector in mesh.yaml (or the defaults): "
        "OTLP/HTTP on /v1/traces, Jaeger's api_v3 and HTTP JSON API under /api/, the UI "
        "under /ui/. `seawall traces drift` lists the edges whose latency drifted.",
    )
    traces.add_argument("action", nargs="?", default="serve", choices=["serve", "drift"])
    traces.add_argument("--config", help="mesh.yaml (its tracing.collector section)")
    traces.add_argument("--listen", help="HOST:PORT (default: tracing.collector, 127.0.0.1:4318)")
    traces.add_argument("--store", help="the SQLite file (default: tracing.collector.store)")
    traces.add_argument(
        "--control",
        help="the control plane's URL, for the UI's SLO page (default: $SEAWALL_CONTROL, "
        "else the control-url file of $SEAWALL_STATE_DIR or .seawall)",
    )
    traces.add_argument(
        "--url", default="http://127.0.0.1:4318", help="for drift: the collector's URL"
    )
    traces.add_argument("--json", action="store_true", help="for drift: print JSON")

    slo = commands.add_parser(
        "slo",
        help="SLOs: budgets, burn rates and alerts; Prometheus rules for them",
        description="`seawall slo` shows every SLO as the control plane evaluates it: "
        "objective, SLI, budget left, burn rates, time to exhaustion, alerts (--json: the "
        "same as JSON). `seawall slo rules -f mesh.yaml` writes Prometheus recording and "
        "alerting rules for them (Sloth's names, the same burn-rate alerts); `promtool "
        "check rules` passes on them.",
    )
    slo.add_argument(
        "action", nargs="?", default="status", choices=["status", "rules", "history", "suggest"]
    )
    slo.add_argument(
        "name", nargs="?", help="for history: the objective (slo:kind); for suggest: a service"
    )
    slo.add_argument("--step", help="for history: the rows' length (default 1d, or 1h)")
    slo.add_argument(
        "--traces", default="http://127.0.0.1:4318", help="for suggest: the collector's URL"
    )
    slo.add_argument("--lookback", default="7d", help="for suggest: how far back (default 7d)")
    slo.add_argument(
        "--soft", action="append", default=[], help="for suggest: a dependency with a fallback"
    )
    slo.add_argument(
        "--route", help="for suggest: that route's figures only (a route name or http.route)"
    )
    slo.add_argument("-f", "--file", help="for rules: mesh.yaml; for suggest: its retries")
    slo.add_argument("-o", "--output", help="for rules: write them there (default: stdout)")
    _client_options(slo)

    apply = commands.add_parser("apply", help="validate and store a mesh config")
    apply.add_argument("-f", "--file", required=True, help="mesh.yaml")
    apply.add_argument(
        "--dry-run",
        action="store_true",
        help="store nothing: print what it would change (as `seawall diff`)",
    )
    _client_options(apply)

    diff = commands.add_parser(
        "diff",
        help="what applying a mesh config would change, restarts and state resets",
        description="Compare a mesh config with the control plane's current one (or "
        "with --against FILE): every setting that differs, which changes need a "
        "restart, which state they reset. Exit status 0: no change, 1: changes, "
        "2: an invalid config or no control plane.",
    )
    diff.add_argument("-f", "--file", required=True, help="the new mesh.yaml")
    diff.add_argument("--against", metavar="FILE", help="compare with this file instead")
    _client_options(diff)

    status = commands.add_parser("status", help="config version of every sidecar")
    status.add_argument("--check", action="store_true", help="exit 1 if any sidecar lags")
    status.add_argument(
        "--watch",
        nargs="?",
        type=_positive_seconds,
        const=2.0,
        metavar="SECONDS",
        help="print it again every SECONDS (default 2s) until interrupted",
    )
    status.add_argument(
        "--count", type=int, default=0, help="with --watch: stop after this many (0: never)"
    )
    _client_options(status)

    services = commands.add_parser("services", help="registered instances and their health")
    _client_options(services)

    certs = commands.add_parser("certs", help="certificates, the CA, join tokens")
    certs.add_argument(
        "action", nargs="?", default="list", choices=["list", "ca", "token", "revoke"]
    )
    certs.add_argument(
        "service",
        nargs="?",
        help="for `token`: the service; for `revoke`: the service whose join token is "
        "revoked (its instances are deregistered, a new token is printed)",
    )
    _client_options(certs)

    check = commands.add_parser(
        "check",
        help="validate a mesh config offline",
        description="Validate a mesh config without a control plane or a sidecar: "
        "exit 0 if valid, 1 if not (every error with its path and line), 2 if unreadable.",
    )
    check.add_argument("-f", "--file", required=True, help="mesh.yaml, or - for stdin")
    check.add_argument("--service", help="also check that the mesh has this service")
    check.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def _check(path: str, service: str | None, as_json: bool) -> int:
    """``seawall check``: see :mod:`seawall.config.report`."""
    from .config.report import check_mesh  # noqa: PLC0415

    if path == "-":
        source, text = "<stdin>", sys.stdin.buffer.read()
    else:
        source = path
        try:
            with open(path, "rb") as file:
                text = file.read()
        except OSError as exc:
            sys.stderr.write(f"seawall check: cannot read {path}: {exc.strerror or exc}\n")
            return 2
    result = check_mesh(text, source, service=service)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=1) + "\n")
    elif result.valid:
        sys.stdout.write(result.describe() + "\n")
    else:
        sys.stderr.write(result.describe() + "\n")
    return 0 if result.valid else 1


def _slo_rules(path: str, output: str | None) -> int:
    """``seawall slo rules``: see :mod:`seawall.slo.rules`."""
    from .config import ConfigError, load_mesh  # noqa: PLC0415
    from .slo.rules import rules_yaml  # noqa: PLC0415

    try:
        mesh = load_mesh(Path(path))
        text = rules_yaml(mesh)
    except ConfigError as exc:
        sys.stderr.write(exc.describe() + "\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"seawall slo rules: cannot read {path}: {exc.strerror or exc}\n")
        return 2
    if output is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(output).write_text(text)
    except OSError as exc:
        sys.stderr.write(f"seawall slo rules: cannot write {output}: {exc.strerror or exc}\n")
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the exit status.

    A missing optional dependency is reported in one line, exit status 2.
    """
    parser = _parser()
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _run(parser, parser.parse_args(argv))
    except ModuleNotFoundError as exc:
        # The commands import their modules lazily (so that `seawall --help` needs
        # nothing): this is where an extra that is not installed shows up. Parsing
        # can get here too (--lease-ttl 5s imports the config's units).
        # The command is the first argument that is not an option (`seawall` has none).
        command = next((arg for arg in argv if not arg.startswith("-")), None)
        prog = f"seawall {command}" if command else "seawall"
        sys.stderr.write(_missing_module(prog, exc) + "\n")
        return 2


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command in ("up", "down", "ps", "logs"):
        return _compose(args)
    if args.command == "chaos":
        from .chaos.cli import main as chaos_main  # noqa: PLC0415 - keep `seawall --help` light

        return chaos_main(args)
    if args.command == "check":
        return _check(args.file, args.service, args.json)
    if args.command == "sidecar":
        from .proxy.sidecar import run  # noqa: PLC0415 - keep `seawall --help` light

        if args.workers is not None and args.workers < 1:
            parser.error(f"--workers must be >= 1, got {args.workers}")
        if not args.config and not args.control:
            parser.error("give --config mesh.yaml, --control URL, or both")
        if not args.control:
            # a static sidecar's ports, address and subset are the file's: say so
            # rather than serve on other ports than asked
            managed_only = [
                flag
                for flag, value in (
                    ("--app-port", args.app_port),
                    ("--inbound-port", args.inbound_port),
                    ("--outbound-port", args.outbound_port),
                    ("--admin-port", args.admin_port),
                    ("--address", args.address),
                    ("--listen-address", args.listen_address),
                    ("--traces-endpoint", args.traces_endpoint),
                    ("--subset", args.subset),
                    ("--join-token", args.join_token),
                    ("--state-dir", args.state_dir),
                )
                if value is not None
            ] + (["--label"] if args.label else [])
            if managed_only:
                parser.error(
                    f"{', '.join(managed_only)}: only with --control (a static sidecar "
                    f"takes its ports, address and subset from {args.config})"
                )
            return run(args.config, args.service, args.workers, log_format=args.log_format)
        token = args.join_token or os.environ.get("SEAWALL_JOIN_TOKEN")
        if not token:
            parser.error("--control needs --join-token (or $SEAWALL_JOIN_TOKEN)")
        from .proxy.managed import LinkOptions, run_linked  # noqa: PLC0415

        options = LinkOptions(
            urls=[u.strip() for u in args.control.split(",") if u.strip()],
            token=token,
            state_dir=args.state_dir
            or "-".join(
                str(part)
                for part in (".seawall-sidecar", args.service, args.subset, args.inbound_port)
                if part
            ),
            subset=args.subset,
            metadata=dict(args.label),
            address=args.address,
            app_port=args.app_port,
            inbound_port=args.inbound_port,
            outbound_port=args.outbound_port,
            admin_port=args.admin_port,
            lease_ttl=args.lease_ttl,
            log_format=args.log_format,
            listen=args.listen_address,
            traces_endpoint=args.traces_endpoint,
        )
        return run_linked(args.service, options, bootstrap=args.config, workers=args.workers)
    if args.command == "traces":
        if args.action == "drift":
            from .telemetry.drift_cli import drift  # noqa: PLC0415

            return drift(args.url, as_json=args.json)
        from .telemetry.collector import run as run_traces  # noqa: PLC0415

        return run_traces(
            args.config, listen=args.listen, store_path=args.store, control=args.control
        )
    if args.command == "slo" and args.action == "suggest":
        if not args.name:
            parser.error("slo suggest: name the service")
        from .slo.suggest_cli import suggest_command  # noqa: PLC0415

        return suggest_command(
            args.name, traces=args.traces, lookback=args.lookback, mesh_file=args.file,
            soft=args.soft, as_json=args.json, route=args.route,
        )  # fmt: skip
    if args.command == "slo" and args.action == "rules":
        if not args.file:
            parser.error("slo rules: -f mesh.yaml is required")
        return _slo_rules(args.file, args.output)
    if args.command == "control":
        from .control.server import run as run_control  # noqa: PLC0415

        return run_control(
            args.state_dir or os.environ.get("SEAWALL_STATE_DIR") or ".seawall",
            args.listen,
            store=args.store,
            etcd=args.etcd,
            etcd_prefix=args.etcd_prefix,
            ca_cert=args.ca_cert,
            ca_key=args.ca_key,
            cert_ttl=args.cert_ttl,
            slo_interval=args.slo_interval,
            slo_resolution=args.slo_resolution,
            traces=args.traces,
        )
    from .control import commands  # noqa: PLC0415

    target = commands.Target.resolve(args.control, args.token, args.state_dir)
    if args.command == "apply" and args.dry_run:
        return commands.diff(target, args.file, as_json=args.json)
    if args.command == "apply":
        return commands.apply(target, args.file, as_json=args.json)
    if args.command == "diff":
        return commands.diff(target, args.file, against=args.against, as_json=args.json)
    if args.command == "status":
        return commands.status(
            target, as_json=args.json, check=args.check, watch=args.watch, count=args.count
        )
    if args.command == "services":
        return commands.services(target, as_json=args.json)
    if args.command == "certs":
        return commands.certs(target, args.action, args.service, as_json=args.json)
    if args.command == "slo" and args.action == "history":
        if not args.name:
            parser.error("slo history: name the objective (seawall slo lists them)")
        return commands.slo_history(target, args.name, args.step, as_json=args.json)
    if args.command == "slo":
        return commands.slos(target, as_json=args.json)
    return 2


if __name__ == "__main__":
    sys.exit(main())
