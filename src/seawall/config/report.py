"""Checking a mesh config offline and reporting the result, for people and for programs.

``seawall check -f mesh.yaml`` runs :func:`check_mesh`: the same loading and
validation as the sidecar and the control plane (:func:`~seawall.config.load_mesh`),
and optionally the sidecar's start-up check that its service is in the mesh.
Nothing is started and nothing is contacted.

The result is a :class:`CheckResult`: every problem as a
:class:`~seawall.config.ConfigIssue`, or a :class:`MeshSummary` of a valid
config. For people, :meth:`CheckResult.describe` prints the problems the way
every other command does (:meth:`ConfigError.describe
<seawall.config.ConfigError.describe>`, one line per problem with its file and
line) or a one-line summary; for programs, :meth:`CheckResult.to_dict`.

:func:`issue_to_dict` and :func:`issue_from_dict` are the JSON form of one
problem, as the control plane's ``422`` answer carries it; a client that gets
one can print it with the same text::

    ConfigError([issue_from_dict(i) for i in body["errors"]], "mesh.yaml").describe()
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._yaml import load_yaml
from .errors import ConfigError, ConfigIssue
from .load import load_mesh
from .model import DEFAULT_POLICY, MeshConfig

__all__ = [
    "CheckResult",
    "MeshSummary",
    "check_mesh",
    "issue_from_dict",
    "issue_to_dict",
    "summarize",
]


def issue_to_dict(issue: ConfigIssue) -> dict[str, str | int | None]:
    """The JSON form of one problem: ``{"path", "message", "value", "line"}``."""
    return {"path": issue.path, "message": issue.message, "value": issue.value, "line": issue.line}


def issue_from_dict(data: Mapping[str, object]) -> ConfigIssue:
    """The problem that :func:`issue_to_dict` (or a control plane's 422) described.

    Tolerant of what came over the wire: a missing or mistyped field is read
    as absent rather than refused, so that a report is never lost to its format.
    """
    path, message, value, line = (data.get(k) for k in ("path", "message", "value", "line"))
    return ConfigIssue(
        path=path if isinstance(path, str) else "",
        message=message if isinstance(message, str) else "invalid",
        value=None if value is None else str(value),
        line=line if isinstance(line, int) and not isinstance(line, bool) else None,
    )


@dataclass(frozen=True, slots=True)
class MeshSummary:
    """What a valid mesh config holds, counted.

    Attributes:
        mesh: the mesh's name.
        trust_domain: its SPIFFE trust domain.
        services: how many services it has.
        subsets: how many subsets, across all services.
        endpoints: how many static endpoints, across all services.
        policies: how many services have a policy other than the defaults.
        routes: how many routes, across all policies.
        slos: how many services have an SLO.
        digest: SHA-256 of the canonical config, as ``seawall apply`` and
            ``seawall status`` show it (their 12 characters are its first 12).
    """

    mesh: str
    trust_domain: str
    services: int
    subsets: int
    endpoints: int
    policies: int
    routes: int
    slos: int
    digest: str

    def to_dict(self) -> dict[str, str | int]:
        """The JSON form: every attribute by its name."""
        return {
            "mesh": self.mesh,
            "trust_domain": self.trust_domain,
            "services": self.services,
            "subsets": self.subsets,
            "endpoints": self.endpoints,
            "policies": self.policies,
            "routes": self.routes,
            "slos": self.slos,
            "digest": self.digest,
        }

    def __str__(self) -> str:
        """``mesh shop, 5 services, 2 subsets, 4 policies, 5 routes, config digest 1a2b...``

        Services, policies and routes are always counted; subsets, endpoints
        and SLOs only when there are any.
        """
        parts = [f"mesh {self.mesh}", _count(self.services, "service")]
        if self.subsets:
            parts.append(_count(self.subsets, "subset"))
        if self.endpoints:
            parts.append(_count(self.endpoints, "static endpoint"))
        parts.append(_count(self.policies, "policy", "policies"))
        parts.append(_count(self.routes, "route"))
        if self.slos:
            parts.append(_count(self.slos, "SLO"))
        parts.append(f"config digest {self.digest[:12]}")
        return ", ".join(parts)


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def summarize(mesh: MeshConfig) -> MeshSummary:
    """Count what ``mesh`` holds (see :class:`MeshSummary`)."""
    return MeshSummary(
        mesh=mesh.mesh,
        trust_domain=mesh.trust_domain,
        services=len(mesh.services),
        subsets=sum(len(s.subsets) for s in mesh.services.values()),
        endpoints=sum(len(s.endpoints) for s in mesh.services.values()),
        # Every service has a policy once loaded (the defaults if none was written).
        policies=sum(1 for p in mesh.policies.values() if p != DEFAULT_POLICY),
        routes=sum(len(p.routes) for p in mesh.policies.values()),
        slos=len(mesh.slos),
        digest=mesh.digest(),
    )


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of :func:`check_mesh`.

    Attributes:
        source: the name the config is reported under (a path, ``<stdin>``).
        errors: every problem, in document order; empty when the config is valid.
        summary: what the config holds, when it loaded (even if ``service``
            was not in it); ``None`` when it did not load.
        service: the service that was looked for, if any.
    """

    source: str
    errors: tuple[ConfigIssue, ...]
    summary: MeshSummary | None
    service: str | None = None

    @property
    def valid(self) -> bool:
        """Whether there was no problem at all."""
        return not self.errors

    def describe(self) -> str:
        """For a terminal: every problem with its file and line, or one summary line.

        >>> print(CheckResult("mesh.yaml", (ConfigIssue("mesh", "required", line=1),), None)
        ...       .describe())
        mesh.yaml: 1 error
          mesh.yaml:1: mesh: required
        """
        if self.errors:
            return ConfigError(self.errors, self.source).describe()
        scope = f"valid for service {self.service}" if self.service else "valid"
        return f"{self.source}: {scope}: {self.summary}"

    def to_dict(self) -> dict[str, Any]:
        """For programs: ``{"valid", "source", "service", "errors", "summary"}``.

        ``errors`` is a list of :func:`issue_to_dict`; ``summary`` is
        :meth:`MeshSummary.to_dict` or ``None``.
        """
        return {
            "valid": self.valid,
            "source": self.source,
            "service": self.service,
            "errors": [issue_to_dict(issue) for issue in self.errors],
            "summary": None if self.summary is None else self.summary.to_dict(),
        }


def check_mesh(text: str | bytes, source: str, *, service: str | None = None) -> CheckResult:
    """Validate the YAML ``text`` of a mesh config, reported under the name ``source``.

    With ``service``, also check what the sidecar of that service checks
    before it starts: that the mesh has such a service (the problem names the
    services it does have). Reading the file is the caller's business, so
    that an unreadable file is told apart from an invalid one.
    """
    try:
        mesh = load_mesh(text.encode("utf-8") if isinstance(text, str) else text)
    except ConfigError as exc:
        return CheckResult(source, tuple(exc.errors), None, service)
    errors: tuple[ConfigIssue, ...] = ()
    if service is not None and service not in mesh.services:
        # It loaded, so it is UTF-8 YAML: parse it again only to find the line.
        decoded = text.decode("utf-8") if isinstance(text, bytes) else text
        line = load_yaml(decoded).line_of(("services",))
        known = ", ".join(mesh.services)
        message = f"no service {service!r} in mesh {mesh.mesh!r} (its services: {known})"
        errors = (ConfigIssue("services", message, line=line),)
    return CheckResult(source, errors, summarize(mesh), service)
