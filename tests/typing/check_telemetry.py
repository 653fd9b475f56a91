"""Static typing checks of the spans' public API, run by mypy in `make test` (not by pytest).

The middleware are what the frameworks' and servers' own types accept (a
Starlette middleware factory, a typeshed WSGI application), the requests
adapter mounts, ``setup`` returns a ``Handle``. The lines marked
``type: ignore[...]`` must stay errors (strict mode's ``warn_unused_ignores``).
"""

from __future__ import annotations

from typing import assert_type
from wsgiref.simple_server import make_server

import httpx
import requests
from flask import Flask
from opentelemetry.sdk.trace import TracerProvider
from starlette.applications import Starlette

import seawall.telemetry
from seawall.client.httpx import AsyncSeawallTransport, SeawallTransport
from seawall.client.requests import SeawallAdapter
from seawall.telemetry.asgi import SeawallMiddleware
from seawall.telemetry.otel import Handle
from seawall.telemetry.wsgi import SeawallWSGIMiddleware

provider = TracerProvider()

handle = seawall.telemetry.setup("inventory", endpoint="http://collector:4318/v1/traces")
assert_type(handle, Handle)
assert_type(handle.force_flush(), bool)
assert_type(handle.shutdown(), None)

starlette = Starlette()
starlette.add_middleware(SeawallMiddleware, tracer_provider=provider)
asgi = SeawallMiddleware(starlette)

flask = Flask(__name__)
wsgi = SeawallWSGIMiddleware(flask.wsgi_app, tracer_provider=provider)
server = make_server("127.0.0.1", 0, wsgi)  # a typeshed WSGIApplication

session = requests.Session()
session.mount("http://", SeawallAdapter(tracer_provider=provider))
client = httpx.Client(transport=SeawallTransport(tracer_provider=provider))
aclient = httpx.AsyncClient(transport=AsyncSeawallTransport(tracer_provider=provider))

seawall.telemetry.setup("inventory", sample="all")  # type: ignore[arg-type]
SeawallAdapter(max_retries=3)  # type: ignore[call-arg]
SeawallMiddleware(starlette, provider)  # type: ignore[call-arg]
