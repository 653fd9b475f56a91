"""The shop: gateway → orders → {payments, email}, gateway → login, each behind a sidecar.

Run one service with ``python -m examples.shop.<service> --config examples/shop/mesh.yaml``;
``python -m examples.mesh_demo`` runs them all with their sidecars and breaks some.
"""
