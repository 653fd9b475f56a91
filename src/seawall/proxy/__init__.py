"""The sidecar proxy: the service-mesh data plane.

Its folders follow the request path. :mod:`seawall.proxy.http1` is the
HTTP/1.1 codec the listeners and the upstream pool share: sans-I/O (bytes in,
callbacks out, bytes to send out), on top of httptools, and strict enough to
refuse request smuggling.
"""
