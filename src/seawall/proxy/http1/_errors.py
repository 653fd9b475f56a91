"""The codec's errors (private; re-exported by :mod:`seawall.proxy.http1`).

As in h11, a :class:`RemoteProtocolError` is the peer's mistake and a
:class:`LocalProtocolError` is ours (an API misuse, or a header we were asked
to send that cannot be sent). Both carry ``status_hint``: the status the
proxy answers its client with before it closes the connection.
"""

from __future__ import annotations

from seawall.policy.errors import SeawallError

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(SeawallError):
    """An HTTP/1.1 message broke the protocol; the connection cannot go on.

    Attributes:
        reason: a short, stable description (safe to log and to send back in
            an error body: it never quotes the offending bytes).
        status_hint: the status to answer with: 400, 405, 413, 414, 431, 501
            or 505 for a client's request, 502 for an upstream's response,
            500 for a :class:`LocalProtocolError`.
    """

    def __init__(self, reason: str, status_hint: int = 400) -> None:
        self.reason = reason
        self.status_hint = status_hint
        super().__init__(f"{reason} ({status_hint})")


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that are not valid HTTP/1.1, or that we refuse.

    The parser that raised it is in its error state: answer ``status_hint``
    (for a request) or 502 (for a response), then close the connection.
    """


class LocalProtocolError(ProtocolError):
    """The codec was used wrongly: a call in the wrong state, or a head to
    serialize that would not be valid HTTP/1.1 (a CR or LF in a value, say)."""

    def __init__(self, reason: str, status_hint: int = 500) -> None:
        super().__init__(reason, status_hint)
