"""HTTP/1.1 for the sidecar: a sans-I/O codec on top of httptools.

Bytes in, handler calls out, bytes to send out; no sockets, no clock, no tasks.

* :class:`RequestParser` parses what a client sends (the server side of a
  connection) and calls a :class:`RequestHandler`; it pauses after each
  request so pipelined requests are answered in order.
* :class:`ResponseParser` parses what an upstream sends (the client side),
  told each request's method so that HEAD, 1xx, 204 and 304 carry no body,
  and calls a :class:`ResponseHandler`.
* :func:`encode_request_head`, :func:`encode_response_head`,
  :func:`encode_chunk` and :func:`encode_last_chunk` build what to send, with
  hop-by-hop fields replaced and Via / X-Forwarded-For added;
  :func:`error_response` answers a refused request;
  :func:`normalize_path` is what :attr:`RequestHead.path` went through.

Everything a peer can get wrong raises :class:`RemoteProtocolError`, whose
``status_hint`` is the status to answer before closing. What is refused, with
which status, and the :class:`Limits` defaults are on ``docs/proxy/http1.md``.
"""

from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._heads import Headers, RequestHead, ResponseHead, normalize_path
from ._limits import DEFAULT_LIMITS, RESPONSE_LIMITS, Limits
from ._parser import RequestHandler, RequestParser, ResponseHandler, ResponseParser
from ._serialize import (
    HOP_BY_HOP,
    LAST_CHUNK,
    VIA,
    encode_chunk,
    encode_last_chunk,
    encode_request_head,
    encode_response_head,
    error_response,
    remove_hop_by_hop,
)

__all__ = [
    "DEFAULT_LIMITS",
    "HOP_BY_HOP",
    "LAST_CHUNK",
    "RESPONSE_LIMITS",
    "VIA",
    "Headers",
    "Limits",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "RequestHandler",
    "RequestHead",
    "RequestParser",
    "ResponseHandler",
    "ResponseHead",
    "ResponseParser",
    "encode_chunk",
    "encode_last_chunk",
    "encode_request_head",
    "encode_response_head",
    "error_response",
    "normalize_path",
    "remove_hop_by_hop",
]
