"""``seawall chaos``: experiments with a steady-state hypothesis, run on the mesh
``seawall up`` runs (docs/chaos.md)."""
