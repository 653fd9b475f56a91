"""Where the control plane keeps its state: one interface, two backends.

:class:`Store` is the contract; :class:`SqliteStore` (the default, a file in
the state directory) and :class:`~seawall.control.store.etcd.EtcdStore` (etcd
v3 through its JSON gateway, for several replicas) implement it.

``EtcdStore`` is not re-exported here: importing it imports httpx (about
60 ms), which a control plane on SQLite never needs; import it from
:mod:`seawall.control.store.etcd`. ``SqliteStore`` only costs :mod:`sqlite3`.
"""

from .base import ConfigRecord, Instance, InstanceConflict, SidecarStatus, Store, StoreError
from .sqlite import SqliteStore

__all__ = [
    "ConfigRecord",
    "Instance",
    "InstanceConflict",
    "SidecarStatus",
    "SqliteStore",
    "Store",
    "StoreError",
]
