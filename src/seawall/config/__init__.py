"""seawall.config: the mesh model (mesh.yaml), its loading and its validation.

Config enters through one door: :func:`load_mesh` (YAML text or a file) or
:func:`parse_mesh` (already-parsed data, e.g. pushed by the control plane).
Each returns a complete, frozen :class:`MeshConfig` or raises
:class:`ConfigError` listing every problem at once, each with its path and
value; an invalid config never yields a partial object.

>>> mesh = load_mesh('''
... mesh: shop
... services:
...   orders: {port: 8002, sidecar: {inbound: 18002, outbound: 15002, admin: 19002}}
... policies:
...   orders: {timeout: 2s, retry: {attempts: 3, backoff: {base: 25ms}}}
... ''')
>>> mesh.policy_for("orders").retry.backoff.base
0.025

This package imports nothing else of seawall: the proxy turns the model into
``seawall.policy`` objects, the control plane stores and pushes it. See
``docs/config/mesh-yaml.md`` for every key, its default and why.
"""

from .errors import ConfigError, ConfigIssue
from .load import load_mesh, parse_mesh
from .model import (
    DEFAULT_BURN_ALERTS,
    AbortFault,
    AlertingConfig,
    BackoffConfig,
    BudgetConfig,
    BulkheadConfig,
    BurnAlert,
    CircuitBreakerConfig,
    CollectorConfig,
    DelayFault,
    DestinationPolicy,
    EndpointConfig,
    FaultConfig,
    HeaderMatch,
    JourneyConfig,
    LatencyObjective,
    LimitsConfig,
    MatchConfig,
    MeshConfig,
    MirrorConfig,
    OutlierConfig,
    RetryConfig,
    RouteConfig,
    RouteRetry,
    ServiceConfig,
    SidecarOptions,
    SidecarPorts,
    SloAlerts,
    SloBudgeting,
    SloConfig,
    SlowCallConfig,
    SloWindow,
    SubsetConfig,
    TailSamplingConfig,
    TracingConfig,
    WindowConfig,
)
from .names import INSTANCE_ID_RULE, NAME_RULE, instance_service, is_name, new_instance_id
from .units import format_duration, parse_duration, parse_percent, parse_size

__all__ = [
    # entry points
    "load_mesh",
    "parse_mesh",
    "ConfigError",
    "ConfigIssue",
    # names
    "NAME_RULE",
    "INSTANCE_ID_RULE",
    "is_name",
    "instance_service",
    "new_instance_id",
    # the model
    "MeshConfig",
    "ServiceConfig",
    "SidecarPorts",
    "SubsetConfig",
    "EndpointConfig",
    "DestinationPolicy",
    "RetryConfig",
    "BackoffConfig",
    "BudgetConfig",
    "CircuitBreakerConfig",
    "WindowConfig",
    "SlowCallConfig",
    "BulkheadConfig",
    "OutlierConfig",
    "RouteConfig",
    "MatchConfig",
    "HeaderMatch",
    "RouteRetry",
    "MirrorConfig",
    "FaultConfig",
    "DelayFault",
    "AbortFault",
    "LimitsConfig",
    "SidecarOptions",
    "AlertingConfig",
    "BurnAlert",
    "DEFAULT_BURN_ALERTS",
    "JourneyConfig",
    "SloAlerts",
    "SloBudgeting",
    "SloConfig",
    "SloWindow",
    "CollectorConfig",
    "TailSamplingConfig",
    "TracingConfig",
    "LatencyObjective",
    # units
    "parse_duration",
    "format_duration",
    "parse_percent",
    "parse_size",
]
