"""Names in a mesh: services, and the instances registered under them.

A **service name** (also a mesh or subset name) is a DNS label: lower-case
letters, digits and ``-``, 1 to 63 characters, starting and ending with a
letter or digit. It never contains a ``.``.

An **instance id** is ``<service>.<suffix>``: the service that owns the
instance, a dot, then a suffix of letters, digits, ``_`` and ``-`` (1 to 64
characters, starting with a letter or digit). Because no service name
contains a dot, the owner of an id is unambiguous: ``front-api.7f3a`` belongs
to ``front-api`` and can never be taken for an instance of ``front``. The
control plane accepts a registration only for an id its caller's service
owns, so one service can never register, replace or evict another's instance.

>>> instance_service("front-api.7f3a"), instance_service("front-api-7f3a")
('front-api', None)
"""

from __future__ import annotations

import re
import secrets

from ._types import LABEL_RULE, is_name

__all__ = [
    "ADMIN_PORT_LABEL",
    "INSTANCE_ID_RULE",
    "NAME_RULE",
    "instance_service",
    "is_name",
    "new_instance_id",
]

NAME_RULE = f"a DNS label: {LABEL_RULE}, starting and ending with a letter or digit"
"""What a service, mesh or subset name must be, in words (for error messages)."""

INSTANCE_ID_RULE = (
    "'<service>.<suffix>': the service's name, a dot, then 1 to 64 letters, digits, "
    "'_' or '-' (starting with a letter or digit)"
)
"""What an instance id must be, in words (for error messages)."""

_SUFFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def instance_service(instance_id: object) -> str | None:
    """The service that owns ``instance_id``, or ``None`` if it is not a valid id."""
    if not isinstance(instance_id, str):
        return None
    service, dot, suffix = instance_id.partition(".")
    if not dot or not is_name(service) or _SUFFIX.fullmatch(suffix) is None:
        return None
    return service


def new_instance_id(service: str) -> str:
    """A fresh id for an instance of ``service`` (random suffix, 64 bits)."""
    if not is_name(service):
        raise ValueError(f"service name must be {NAME_RULE}, got {service!r}")
    return f"{service}.{secrets.token_hex(8)}"


ADMIN_PORT_LABEL = "seawall.admin"
"""The instance metadata key a managed sidecar registers its admin port under (the
control plane scrapes its ``/metrics`` there for the SLOs)."""
