"""seawall.control: the control plane (``seawall control``).

It stores the mesh config (versioned), keeps the registry of service
instances under TTL leases, pushes config and endpoint sets to subscribed
sidecars, and runs the certificate authority that issues their mTLS
identities. State lives behind one :class:`~seawall.control.store.Store`
interface: SQLite on one machine (the default), etcd v3 when several
control-plane replicas serve one mesh.
"""
