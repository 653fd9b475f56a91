"""Payments: ``POST /charge`` charges a card (the demo makes it fail with 503)."""

from __future__ import annotations

import itertools

from .app import Reply, Request, ShopApp, main


def build(app: ShopApp) -> None:
    ids = itertools.count(1)

    @app.route("POST", "/charge")
    async def charge(request: Request) -> Reply:
        order = (request.json() or {}).get("order")
        return Reply(200, {"charge": next(ids), "order": order, "status": "captured"})


if __name__ == "__main__":
    main("payments", build)
