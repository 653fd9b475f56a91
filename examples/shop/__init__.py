"""The shop: gateway → orders → {payments, email}, gateway → login, each behind a sidecar;
payments → cardnet, a card network outside the mesh (``external:`` in mesh.yaml).

Run one service with ``python -m examples.shop.<service> --config examples/shop/mesh.yaml``;
``python -m examples.mesh_demo`` runs them all with their sidecars, and a stand-in for
CardNet (``examples.shop.cardnet``, HTTPS with a throwaway CA), and breaks some.
"""
