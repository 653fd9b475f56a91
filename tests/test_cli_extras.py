"""A command run without an optional dependency says what to install, in one line, exit 2.

Each test runs the real CLI in a fresh interpreter where some modules cannot
be imported: a meta path finder, installed before seawall is imported, raises
``ModuleNotFoundError`` for them just as a missing distribution does. One test
goes further and runs with no site-packages at all (``python -S``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHOP = ROOT / "tests" / "config" / "fixtures" / "shop.yaml"

# argv[1]: the modules to block, comma-separated; the rest: seawall's arguments.
WITHOUT = """\
import sys

BLOCKED = tuple(sys.argv[1].split(","))


class Uninstalled:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Uninstalled())
from seawall.cli import main

sys.exit(main(sys.argv[2:]))
"""

ENV = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src")}


def without(blocked: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT, blocked, *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        env=ENV,
    )


def assert_one_line(out: subprocess.CompletedProcess[str], expected: str) -> None:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr == expected + "\n"
    assert out.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["sidecar", "--config", str(SHOP), "--service", "orders"],
        ["sidecar", "--service", "orders", "--control", "http://127.0.0.1:9", "--join-token", "t"],
        ["sidecar", "--config", str(SHOP), "--service", "orders", "--lease-ttl", "5s"],
        ["control", "--state-dir", "state", "--listen", "127.0.0.1:0"],
        ["check", "-f", str(SHOP)],
        ["check", "-f", str(SHOP), "--json"],
        ["apply", "-f", str(SHOP), "--control", "http://127.0.0.1:9"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_without_pyyaml(args: list[str], tmp_path: Path) -> None:
    out = without("yaml", *args, cwd=tmp_path)
    assert_one_line(
        out, f"seawall {args[0]}: needs PyYAML, which is not installed: pip install 'seawall[mesh]'"
    )
    assert not (tmp_path / "state").exists()  # failed before doing anything


@pytest.mark.parametrize(
    ("blocked", "distribution"),
    [("pydantic", "pydantic"), ("pydantic_core", "pydantic-core")],
)
def test_without_pydantic(blocked: str, distribution: str, tmp_path: Path) -> None:
    out = without(blocked, "check", "-f", str(SHOP), cwd=tmp_path)
    assert_one_line(
        out,
        f"seawall check: needs {distribution}, which is not installed: pip install 'seawall[mesh]'",
    )


@pytest.mark.parametrize("command", ["status", "services", "certs", "apply"])
def test_client_commands_without_httpx(command: str, tmp_path: Path) -> None:
    args = ["-f", str(SHOP)] if command == "apply" else []
    out = without("httpx", command, *args, "--control", "http://127.0.0.1:9", cwd=tmp_path)
    assert_one_line(
        out, f"seawall {command}: needs httpx, which is not installed: pip install 'seawall[mesh]'"
    )


def test_control_without_cryptography(tmp_path: Path) -> None:
    out = without("cryptography", "control", "--state-dir", "state", cwd=tmp_path)
    assert_one_line(
        out,
        "seawall control: needs cryptography, which is not installed: pip install 'seawall[mesh]'",
    )


def test_an_unknown_missing_module_is_named(tmp_path: Path) -> None:
    # h11 comes with httpx (through httpcore): not ours to name an extra for.
    out = without("h11", "status", "--control", "http://127.0.0.1:9", cwd=tmp_path)
    assert_one_line(
        out,
        "seawall status: needs the Python module 'h11', which is not installed "
        "(`pip check` names the package that requires it)",
    )


def test_a_missing_part_of_seawall_says_reinstall(tmp_path: Path) -> None:
    out = without("seawall.config.report", "check", "-f", str(SHOP), cwd=tmp_path)
    assert_one_line(
        out,
        "seawall check: cannot import seawall.config.report: "
        "this seawall installation is incomplete; reinstall it",
    )


def test_help_needs_no_extra(tmp_path: Path) -> None:
    out = without("yaml,pydantic,httpx,cryptography,uvloop,httptools", "--help", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "check" in out.stdout


@pytest.mark.parametrize("command", ["sidecar", "control", "check"])
def test_with_no_site_packages_at_all(command: str, tmp_path: Path) -> None:
    """``python -S``: only the standard library and seawall's own source."""
    args = {
        "sidecar": ["--config", str(SHOP), "--service", "orders"],
        "control": ["--state-dir", "state"],
        "check": ["-f", str(SHOP)],
    }[command]
    out = subprocess.run(
        [sys.executable, "-S", "-m", "seawall", command, *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env=ENV,
    )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith(f"seawall {command}: needs ")
    assert out.stderr.endswith(", which is not installed: pip install 'seawall[mesh]'\n")
    assert out.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "flags",
    [["--inbound-port", "28999"], ["--admin-port", "28998", "--subset", "v2"], ["--label", "a=b"]],
)
def test_a_static_sidecar_refuses_the_flags_of_a_managed_one(
    flags: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ports, address and subset of a static sidecar are the file's: a flag that
    would be ignored is an error that says so, and nothing starts."""
    from seawall.cli import main  # noqa: PLC0415 - the module tests a light import

    with pytest.raises(SystemExit) as done:
        main(["sidecar", "--config", str(tmp_path / "mesh.yaml"), "--service", "a", *flags])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert f"{flags[0]}" in err
    assert "only with --control" in err
