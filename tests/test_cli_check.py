"""``seawall check -f mesh.yaml``: offline validation, run as a real process."""

from __future__ import annotations

import json
from pathlib import Path

from cliutil import seawall
from seawall.config import load_mesh

ROOT = Path(__file__).resolve().parent.parent
SHOP = ROOT / "tests" / "config" / "fixtures" / "shop.yaml"

# Six problems, each on a known line.
BROKEN = """\
mesh: Shop
services:
  orders:
    port: 0
    sidecar: {inbound: 18002, outbound: 15002, admin: 70000}
  payments:
    port: 8003
    sidecar: {inbound: 18003, outbound: 15003, admin: 19003}
policies:
  ordrs: {timeout: 2s}
  payments:
    timeout: -1s
"""
BROKEN_ERRORS = [
    (1, "mesh: must be a name of"),
    (4, "services.orders.port: must be >= 1, got 0"),
    (5, "services.orders.sidecar.admin: must be <= 65535, got 70000"),
    (10, "policies.ordrs: no such service (did you mean 'orders'?)"),
    (12, "policies.payments.timeout: must be > 0, got '-1s'"),
]


def test_a_valid_file_exits_0_with_a_one_line_summary() -> None:
    out = seawall("check", "-f", str(SHOP))
    assert out.returncode == 0, out.stderr
    digest = load_mesh(SHOP).digest()[:12]
    assert out.stdout == (
        f"{SHOP}: valid: mesh shop, 5 services, 2 subsets, 4 static endpoints, 4 policies, "
        f"4 routes, 2 SLOs, config digest {digest}\n"
    )
    assert out.stderr == ""


def test_a_small_valid_file_leaves_out_what_it_does_not_have(tmp_path: Path) -> None:
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(
        "mesh: tiny\n"
        "services:\n"
        "  orders: {port: 8002, sidecar: {inbound: 18002, outbound: 15002, admin: 19002}}\n"
    )
    out = seawall("check", "-f", str(mesh))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"{mesh}: valid: mesh tiny, 1 service, 0 policies, 0 routes, ")


def test_every_error_is_printed_with_its_path_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN)
    out = seawall("check", "-f", str(bad))
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert lines[0] == f"{bad}: {len(lines) - 1} errors"
    for line, text in BROKEN_ERRORS:
        assert any(got.startswith(f"  {bad}:{line}: {text}") for got in lines[1:]), (line, text)
    # In document order.
    numbers = [int(got.split(":")[1]) for got in lines[1:]]
    assert numbers == sorted(numbers)


def test_a_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("mesh: shop\nservices:\n  orders: {port: 8002\n")
    out = seawall("check", "-f", str(bad))
    assert out.returncode == 1
    assert f"{bad}: 1 error" in out.stderr
    assert f"  {bad}:" in out.stderr


def test_not_utf8_is_an_invalid_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"mesh: \xff\n")
    out = seawall("check", "-f", str(bad))
    assert out.returncode == 1
    assert "not UTF-8" in out.stderr


def test_a_missing_file_is_named_and_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    out = seawall("check", "-f", str(missing))
    assert out.returncode == 2
    assert out.stderr == f"seawall check: cannot read {missing}: No such file or directory\n"
    assert out.stdout == ""
    directory = seawall("check", "-f", str(tmp_path))
    assert directory.returncode == 2
    assert directory.stderr == f"seawall check: cannot read {tmp_path}: Is a directory\n"


def test_dash_reads_stdin() -> None:
    good = seawall("check", "-f", "-", stdin=SHOP.read_bytes())
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("<stdin>: valid: mesh shop, 5 services, ")
    bad = seawall("check", "-f", "-", stdin=BROKEN.encode())
    assert bad.returncode == 1
    assert "  <stdin>:4: services.orders.port: must be >= 1, got 0" in bad.stderr
    empty = seawall("check", "-f", "-", stdin=b"")
    assert empty.returncode == 1
    assert "empty config" in empty.stderr


def test_json_for_a_valid_file() -> None:
    out = seawall("check", "-f", str(SHOP), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data == {
        "valid": True,
        "source": str(SHOP),
        "service": None,
        "errors": [],
        "summary": {
            "mesh": "shop",
            "trust_domain": "shop.local",
            "services": 5,
            "subsets": 2,
            "endpoints": 4,
            "policies": 4,
            "routes": 4,
            "slos": 2,
            "digest": load_mesh(SHOP).digest(),
        },
    }


def test_json_for_an_invalid_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN)
    out = seawall("check", "-f", str(bad), "--json")
    assert out.returncode == 1
    assert out.stderr == ""
    data = json.loads(out.stdout)
    assert data["valid"] is False
    assert data["summary"] is None
    assert {"path": "services.orders.port", "message": "must be >= 1", "value": "0", "line": 4} in (
        data["errors"]
    )
    got = {(e["line"], e["path"]) for e in data["errors"]}
    assert {(1, "mesh"), (5, "services.orders.sidecar.admin"), (10, "policies.ordrs")} <= got


def test_service_that_exists() -> None:
    out = seawall("check", "-f", str(SHOP), "--service", "orders")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"{SHOP}: valid for service orders: mesh shop, ")


def test_unknown_service_names_the_known_ones() -> None:
    out = seawall("check", "-f", str(SHOP), "--service", "billing")
    assert out.returncode == 1
    services_line = SHOP.read_text().splitlines().index("services:") + 1
    assert out.stderr == (
        f"{SHOP}: 1 error\n"
        f"  {SHOP}:{services_line}: services: no service 'billing' in mesh 'shop' "
        "(its services: gateway, orders, payments, email, login)\n"
    )
    as_json = json.loads(seawall("check", "-f", str(SHOP), "--service", "billing", "--json").stdout)
    assert as_json["valid"] is False
    assert as_json["service"] == "billing"
    assert as_json["errors"][0]["path"] == "services"
    assert as_json["summary"]["mesh"] == "shop"  # the config itself loaded


def test_usage_errors_exit_2() -> None:
    out = seawall("check")
    assert out.returncode == 2
    assert "-f/--file" in out.stderr
