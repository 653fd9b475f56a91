"""Login: ``POST /login`` returns a session token (it stays healthy in the demo)."""

from __future__ import annotations

import secrets

from .app import Reply, Request, ShopApp, main


def build(app: ShopApp) -> None:
    @app.route("POST", "/login")
    async def login(request: Request) -> Reply:
        user = (request.json() or {}).get("user", "guest")
        return Reply(200, {"user": user, "token": secrets.token_urlsafe(12)})


if __name__ == "__main__":
    main("login", build)
