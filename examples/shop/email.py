"""Email: ``POST /send`` sends an order confirmation (the demo makes it hang)."""

from __future__ import annotations

from .app import Reply, Request, ShopApp, main


def build(app: ShopApp) -> None:
    @app.route("POST", "/send")
    async def send(request: Request) -> Reply:
        message = request.json() or {}
        return Reply(200, {"queued": True, "to": message.get("to")})


if __name__ == "__main__":
    main("email", build)
