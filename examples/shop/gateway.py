"""The shop's edge: external clients reach it through its sidecar's inbound listener.

* ``POST /checkout`` places an order: ``POST http://orders/orders``;
* ``POST /login`` signs a user in: ``POST http://login/login``.

The gateway passes its dependencies' answers on as they are (status and body).
"""

from __future__ import annotations

from .app import Reply, Request, ShopApp, main


def build(app: ShopApp) -> None:
    @app.route("POST", "/checkout")
    async def checkout(request: Request) -> Reply:
        cart = request.json() or {}
        status, body, _ = await app.call("orders", "POST", "/orders", cart)
        return Reply(status or 502, body)

    @app.route("POST", "/login")
    async def login(request: Request) -> Reply:
        status, body, _ = await app.call("login", "POST", "/login", request.json() or {})
        return Reply(status or 502, body)


if __name__ == "__main__":
    main("gateway", build)
