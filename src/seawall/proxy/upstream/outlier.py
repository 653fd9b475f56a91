"""Outlier detection for the proxy's endpoints: :mod:`seawall.policy.outlier`, keyed by
:class:`~seawall.proxy.upstream.endpoint.Endpoint`.

The detector is a pure policy over hashable keys and lives in
:mod:`seawall.policy.outlier` (see there for the rules, Envoy's
consecutive-errors detection, and the local-origin mode). This module keeps
the names the proxy has always imported from here: :data:`OutlierDetector` is
``seawall.policy.outlier.OutlierDetector[Endpoint]``.
"""

from __future__ import annotations

from typing import TypeAlias

from ...policy.outlier import (
    CONSECUTIVE_5XX,
    CONSECUTIVE_GATEWAY_ERROR,
    CONSECUTIVE_LOCAL_ORIGIN_FAILURE,
    EjectionReason,
    EndpointOutlierState,
    OutlierConfig,
    OutlierSnapshot,
)
from ...policy.outlier import OutlierDetector as _OutlierDetector
from .endpoint import Endpoint

__all__ = [
    "CONSECUTIVE_5XX",
    "CONSECUTIVE_GATEWAY_ERROR",
    "CONSECUTIVE_LOCAL_ORIGIN_FAILURE",
    "EjectionReason",
    "EndpointOutlierState",
    "OutlierConfig",
    "OutlierDetector",
    "OutlierSnapshot",
]

OutlierDetector: TypeAlias = _OutlierDetector[Endpoint]
"""The outlier detector of one destination's endpoints (see :mod:`seawall.policy.outlier`)."""
