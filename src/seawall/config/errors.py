"""The config error: every problem in a mesh config, each with its path and value.

A config is checked whole before anything uses it, and every problem found is
reported at once, one per line, in document order::

    policies.orders.retry.attempts: must be >= 1, got 0
    policies.orders.routes[0].split: weights must sum to 100, got 95
    policies.ordrs: no such service (did you mean 'orders'?)

``ConfigError`` derives from :class:`ValueError` only: :mod:`seawall.config`
imports nothing else of seawall, so it cannot join ``SeawallError`` (which lives
in :mod:`seawall.policy`) without breaking the layering.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ConfigError", "ConfigIssue"]


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config.

    Attributes:
        path: where, as dotted keys and ``[index]`` for list items
            (``"policies.orders.routes[0].split"``); ``""`` for the document
            itself; ``"line 3, column 7"`` for a YAML syntax error.
        message: what is wrong, short and human (``"must be >= 1"``).
        value: ``repr`` of the offending value as written, or ``None`` when
            there is none to show (a missing key, an unknown key).
        line: 1-based line in the YAML source, when the config came from YAML
            and the line is known; not part of ``str(issue)``.
    """

    path: str
    message: str
    value: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.path or "(top level)"
        got = "" if self.value is None else f", got {self.value}"
        return f"{where}: {self.message}{got}"


class ConfigError(ValueError):
    """A mesh config was rejected; nothing of it was applied.

    Attributes:
        errors: every problem found, in document order.
        source: the file the config was read from, when there was one.

    ``str(error)`` is one line per problem, ``path: message, got value``.
    """

    def __init__(self, errors: Iterable[ConfigIssue], source: str | None = None) -> None:
        self.errors: list[ConfigIssue] = list(errors)
        self.source = source
        super().__init__("\n".join(str(issue) for issue in self.errors))

    def describe(self) -> str:
        """The report for a terminal: a header line, then each problem with its line.

        >>> print(ConfigError([ConfigIssue("mesh", "required", line=1)], "mesh.yaml").describe())
        mesh.yaml: 1 error
          mesh.yaml:1: mesh: required
        """
        source = self.source or "config"
        count = len(self.errors)
        lines = [f"{source}: {count} error{'' if count == 1 else 's'}"]
        for issue in self.errors:
            at = f"{source}:{issue.line}: " if issue.line is not None else ""
            lines.append(f"  {at}{issue}")
        return "\n".join(lines)
