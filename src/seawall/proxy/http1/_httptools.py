"""The typed seam to httptools (private).

httptools is imported through :func:`importlib.import_module` and cast to the
narrow :class:`_Module` protocol below: only what the codec uses is typed, the
same way whether or not the installed httptools ships type stubs, and with no
``type: ignore``. Everything else in the package talks to httptools through
this module, so an upgrade has one place to look.

The parsers are created with every llhttp leniency explicitly off. llhttp 9's
defaults are already strict; saying so here keeps them strict if a default
ever changes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol, cast

__all__ = [
    "HeaderSink",
    "LLParser",
    "ParserError",
    "ParserInvalidMethodError",
    "ParserUpgrade",
    "new_request_parser",
    "new_response_parser",
]


class HeaderSink(Protocol):
    """What httptools calls back. Only ``on_header`` is offered to it: the
    codec frames bodies itself and never feeds httptools past a head."""

    def on_header(self, name: bytes, value: bytes) -> None: ...


class LLParser(Protocol):
    """The part of ``httptools.HttpRequestParser`` / ``HttpResponseParser`` used."""

    def feed_data(self, data: bytes) -> None: ...

    def set_dangerous_leniencies(
        self,
        *,
        lenient_headers: bool | None = None,
        lenient_chunked_length: bool | None = None,
        lenient_keep_alive: bool | None = None,
        lenient_transfer_encoding: bool | None = None,
        lenient_version: bool | None = None,
        lenient_data_after_close: bool | None = None,
        lenient_optional_lf_after_cr: bool | None = None,
        lenient_optional_cr_before_lf: bool | None = None,
        lenient_optional_crlf_after_chunk: bool | None = None,
        lenient_spaces_after_chunk_size: bool | None = None,
    ) -> None: ...


class _Module(Protocol):
    HttpRequestParser: Callable[[HeaderSink], LLParser]
    HttpResponseParser: Callable[[HeaderSink], LLParser]
    HttpParserError: type[Exception]
    HttpParserInvalidMethodError: type[Exception]
    HttpParserUpgrade: type[Exception]


_httptools = cast(_Module, importlib.import_module("httptools"))

ParserError: type[Exception] = _httptools.HttpParserError
"""Base of httptools' parse errors (invalid token, bad CRLF, CL/TE conflict, ...)."""
ParserInvalidMethodError: type[Exception] = _httptools.HttpParserInvalidMethodError
"""llhttp does not know the method (it may still be a syntactically valid token)."""
ParserUpgrade: type[Exception] = _httptools.HttpParserUpgrade
"""Raised after the head of an Upgrade (or CONNECT) message; not an error here."""

_STRICT = dict.fromkeys(
    (
        "lenient_headers",
        "lenient_chunked_length",
        "lenient_keep_alive",
        "lenient_transfer_encoding",
        "lenient_version",
        "lenient_data_after_close",
        "lenient_optional_lf_after_cr",
        "lenient_optional_cr_before_lf",
        "lenient_optional_crlf_after_chunk",
        "lenient_spaces_after_chunk_size",
    ),
    False,
)


def new_request_parser(sink: HeaderSink) -> LLParser:
    """A strict llhttp request parser that reports header lines to ``sink``."""
    parser = _httptools.HttpRequestParser(sink)
    parser.set_dangerous_leniencies(**_STRICT)
    return parser


def new_response_parser(sink: HeaderSink) -> LLParser:
    """A strict llhttp response parser that reports header lines to ``sink``."""
    parser = _httptools.HttpResponseParser(sink)
    parser.set_dangerous_leniencies(**_STRICT)
    return parser
