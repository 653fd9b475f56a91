"""Size limits for parsing (private; re-exported by :mod:`seawall.proxy.http1`).

Validation runs at construction and names the field and the value, like every
seawall settings object.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...policy._validate import require_int

__all__ = ["DEFAULT_LIMITS", "RESPONSE_LIMITS", "Limits"]



@dataclass(frozen=True, slots=True)
class Limits:
    """How much a parser accepts before it refuses the message.

    Attributes:
        max_request_line: bytes in the request line (or status line), CRLF
            excluded. Over it: 414.
        max_headers: header field lines in the head (and, separately, in the
            trailer section of a chunked body). Over it: 431.
        max_header_bytes: bytes in the whole head, start line and final CRLF
            included (and, separately, in a trailer section). Over it: 431.
        max_body_size: bytes of body content (chunk framing not counted), or
            ``None`` for no limit. A larger Content-Length is refused before
            any of the body is read; a chunked body is refused as soon as a
            chunk size takes the total over the limit. Over it: 413.
        max_chunk_ext_bytes: bytes of chunk extensions (``;name=value``) in
            one message, all chunks together. Over it: 400.
    """

    max_request_line: int = 8 * 1024
    max_headers: int = 100
    max_header_bytes: int = 64 * 1024
    max_body_size: int | None = 10 * 1024 * 1024
    max_chunk_ext_bytes: int = 16 * 1024

    def __post_init__(self) -> None:
        require_int("Limits", "max_request_line", self.max_request_line, minimum=16)
        require_int("Limits", "max_headers", self.max_headers, minimum=1)
        require_int("Limits", "max_header_bytes", self.max_header_bytes, minimum=32)
        require_int("Limits", "max_body_size", self.max_body_size, minimum=0, allow_none=True)
        require_int("Limits", "max_chunk_ext_bytes", self.max_chunk_ext_bytes, minimum=0)


DEFAULT_LIMITS = Limits()
"""The limits a :class:`~seawall.proxy.http1.RequestParser` uses by default."""

RESPONSE_LIMITS = Limits(max_body_size=None)
"""The limits a :class:`~seawall.proxy.http1.ResponseParser` uses by default:
the same head limits, and no body limit (responses stream through)."""
