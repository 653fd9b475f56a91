"""The sidecar: the service-mesh data plane, as Python drives it.

The per-request path runs in the Rust core (``seawall._native``, built from
``crates/``): listeners, the strict HTTP/1.1 codec, routing, retries,
breakers, pools, balancers, outlier detection, mTLS, metrics. This package is
what stays in Python: the spec the core reads (:mod:`~seawall.proxy.spec`),
the static sidecar process (:mod:`~seawall.proxy.sidecar`,
:mod:`~seawall.proxy.serve`), the managed one and its control-plane link
(:mod:`~seawall.proxy.managed`, :mod:`~seawall.proxy.control_link`), the
core driven with a config model (:mod:`~seawall.proxy.core`), the identity
files (:mod:`~seawall.proxy.identity`) and config reload timing
(:mod:`~seawall.proxy.reload`).
"""
