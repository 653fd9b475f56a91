"""``seawall up``: a whole mesh from one mesh.yaml (:mod:`seawall.up.runner`), its
processes (:mod:`seawall.up.processes`) from a plan (:mod:`seawall.up.plan`), and
compose's verbs around it (:mod:`seawall.up.cli`)."""
