"""A naive aiohttp reverse proxy: the Python baseline of benchmarks/proxy_throughput.py.

What a Python developer would write first: an ``aiohttp.web`` server whose one
handler forwards each request through a shared ``aiohttp.ClientSession``
(pooled keep-alive upstream connections), reading whole bodies both ways.
One process, the default asyncio event loop, no policies. It is deliberately
not tuned: it is the yardstick the sidecar has to beat by 3x.

    python benchmarks/aiohttp_proxy.py --port 8080 --upstream 127.0.0.1:8081
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Mapping

import aiohttp
from aiohttp import web

# RFC 9110 section 7.6.1, plus the framing headers aiohttp sets itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)


def _forwardable(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}


def make_app(upstream: str) -> web.Application:
    base = f"http://{upstream}"
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
            app[session_key] = session
            yield

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        async with request.app[session_key].request(
            request.method,
            base + request.path_qs,
            headers=_forwardable(request.headers),
            data=body or None,
            allow_redirects=False,
        ) as upstream_response:
            payload = await upstream_response.read()
            return web.Response(
                status=upstream_response.status,
                body=payload,
                headers=_forwardable(upstream_response.headers),
            )

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the backend")
    args = parser.parse_args()
    web.run_app(
        make_app(args.upstream), host=args.host, port=args.port, print=None, access_log=None
    )


if __name__ == "__main__":
    main()
