"""seawall: high-availability infrastructure for Python microservices.

The in-process resilience library lives in :mod:`seawall.policy`; HTTP client
integration in :mod:`seawall.client`; trace context and correlation ids in
:mod:`seawall.telemetry`.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
