"""The ``seawall`` command line.

``seawall sidecar --config mesh.yaml --service NAME [--workers N]`` runs the
sidecar proxy of one service (see :mod:`seawall.proxy.sidecar`).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="seawall", description="High-availability toolkit.")
    commands = parser.add_subparsers(dest="command", required=True)
    sidecar = commands.add_parser("sidecar", help="run the sidecar proxy of one service")
    sidecar.add_argument("--config", required=True, help="path to mesh.yaml")
    sidecar.add_argument("--service", required=True, help="the service this sidecar serves")
    sidecar.add_argument(
        "--workers", type=int, default=None, help="processes sharing the ports (SO_REUSEPORT)"
    )
    args = parser.parse_args(argv)
    if args.command == "sidecar":
        from .proxy.sidecar import run  # noqa: PLC0415 - keep `seawall --help` light

        if args.workers is not None and args.workers < 1:
            parser.error(f"--workers must be >= 1, got {args.workers}")
        return run(args.config, args.service, args.workers)
    return 2


if __name__ == "__main__":
    sys.exit(main())
