"""Forced certificate expiry: a chaos fault the control plane injects on demand (sans-I/O).

``POST /v1/chaos/certificates`` (admin) forces a fault on one service,
``DELETE /v1/chaos/certificates/{service}`` lifts it; :class:`CertFaults`
holds what is in force and decides, for each CSR of a faulted service,
whether to sign it and for how long. While a fault is in force:

* **short lifetime**: every certificate issued to the service lives
  :attr:`CertFault.ttl` seconds instead of ``--cert-ttl``;
* **renewal blocked** (:attr:`CertFault.block_renewal`): each sidecar of the
  service gets one certificate under the fault, the short-lived one; every
  later CSR from the same key is refused with :class:`RenewalBlockedError`
  (the API answers 503), so the certificate really expires on the wire and
  peers refuse the handshake. Sidecars are told apart by their key: it never
  leaves the sidecar, and a join token is shared by every instance of a
  service;
* **renew now**: forcing or lifting a fault changes the service's renewal
  token (:attr:`CertFaults.renewals`). The control plane pushes the tokens in
  the snapshot the sidecars long-poll (``"renew": {service: token}``); a
  sidecar whose service's token changes renews its certificate at once (see
  :mod:`seawall.proxy.control_link`). Tokens start with a nonce of this
  object, so a token never repeats after a control-plane restart.

Faults live in the memory of one replica: a restart lifts them all (the
sidecars then renew at two thirds of their short certificate's life and get
normal ones back: a rollback, which is safe). With several replicas, a fault
acts on the certificates that replica signs and the snapshots it serves;
sidecars that subscribe to and renew through another replica do not see it.

Nothing here reads a clock: :meth:`CertFaults.force` is told the time.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_TTL", "MIN_TTL", "CertFault", "CertFaults", "RenewalBlockedError"]

MIN_TTL = 1.0
"""Shortest lifetime a fault may force, seconds (X.509 times are whole seconds)."""
MAX_TTL = 86_400.0
"""Longest, seconds: a day, the default ``--cert-ttl`` (a longer one would not shorten it)."""


@dataclass(frozen=True, slots=True)
class CertFault:
    """A forced certificate expiry on one service, as stored and listed."""

    service: str
    ttl: float
    """Lifetime of the certificates issued to the service while in force (seconds)."""
    block_renewal: bool
    """After its one short-lived certificate, a sidecar's CSRs are refused."""
    since: float
    """When it was forced (wall-clock seconds since the epoch, for display)."""

    def __post_init__(self) -> None:
        if not isinstance(self.service, str) or not self.service:
            raise ValueError(f"service: must be a service name, got {self.service!r}")
        ttl = self.ttl
        if (
            not isinstance(ttl, (int, float))
            or isinstance(ttl, bool)
            or not math.isfinite(ttl)
            or not MIN_TTL <= ttl <= MAX_TTL
        ):
            raise ValueError(f"ttl: must be seconds in {MIN_TTL:g}..{MAX_TTL:g}, got {ttl!r}")
        if not isinstance(self.block_renewal, bool):
            raise ValueError(f"block_renewal: must be true or false, got {self.block_renewal!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (what the API answers)."""
        return {
            "service": self.service,
            "ttl": float(self.ttl),
            "block_renewal": self.block_renewal,
            "since": self.since,
        }


class RenewalBlockedError(Exception):
    """A CSR refused because a fault blocks the renewals of its service."""

    def __init__(self, fault: CertFault) -> None:
        self.fault = fault
        super().__init__(
            f"certificate renewal of {fault.service!r} is blocked by a chaos fault "
            f"(forced expiry, ttl {fault.ttl:g}s, block_renewal); lift it with "
            f"DELETE /v1/chaos/certificates/{fault.service}"
        )


class CertFaults:
    """The faults in force on one replica, and the renewal tokens pushed to sidecars."""

    def __init__(self, nonce: str | None = None) -> None:
        self._nonce = nonce if nonce is not None else os.urandom(4).hex()
        self._changes = 0
        self._faults: dict[str, CertFault] = {}
        self._signed: dict[str, set[str]] = {}  # service -> keys signed under its fault
        self._renewals: dict[str, str] = {}

    def _bump(self, service: str) -> None:
        self._changes += 1
        self._renewals[service] = f"{self._nonce}.{self._changes}"

    def force(self, fault: CertFault) -> None:
        """Put ``fault`` in force (replacing the service's previous one: every sidecar
        gets one certificate under it again), and ask the service's sidecars to renew."""
        self._faults[fault.service] = fault
        self._signed[fault.service] = set()
        self._bump(fault.service)

    def lift(self, service: str) -> CertFault | None:
        """Lift the service's fault (``None``: there was none, and nothing changes); its
        sidecars are asked to renew, for a certificate of the normal lifetime."""
        fault = self._faults.pop(service, None)
        self._signed.pop(service, None)
        if fault is not None:
            self._bump(service)
        return fault

    def get(self, service: str) -> CertFault | None:
        """The service's fault, if one is in force."""
        return self._faults.get(service)

    def faults(self) -> list[CertFault]:
        """Every fault in force, by service."""
        return [self._faults[s] for s in sorted(self._faults)]

    @property
    def renewals(self) -> dict[str, str]:
        """Per service whose fault was ever forced or lifted: a token that changes each
        time its sidecars must renew at once."""
        return dict(self._renewals)

    def admit(self, service: str, key: str) -> float | None:
        """A CSR of ``service`` for the key ``key`` (any stable id of the public key) is
        about to be signed: the lifetime to give it (``None``: the normal one).

        Raises :class:`RenewalBlockedError` when the service's fault blocks renewals
        and this key already got its certificate under it; otherwise the key is
        counted as signed (:meth:`release` takes it back if the signing fails).
        """
        fault = self._faults.get(service)
        if fault is None:
            return None
        if fault.block_renewal:
            signed = self._signed.setdefault(service, set())
            if key in signed:
                raise RenewalBlockedError(fault)
            signed.add(key)
        return float(fault.ttl)

    def release(self, service: str, key: str) -> None:
        """The signing :meth:`admit` allowed failed: the key may ask again."""
        self._signed.get(service, set()).discard(key)
