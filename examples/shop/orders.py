"""Orders: charges the card (payments), then sends the confirmation (email).

``POST /orders``:

* ``POST http://payments/charge`` must succeed, or the order fails with 503
  (and says why: payments' answer, e.g. "card network unavailable", and
  whether the mesh answered for payments: circuit open, overflow);
* ``POST http://email/send`` is best effort: when email is down or slow, the
  order still succeeds, with ``"email": "deferred"``. The mesh bounds how long
  orders waits for it (a short timeout) and how many calls may wait at once
  (a small bulkhead), so a hung email never ties orders up.
"""

from __future__ import annotations

import itertools

from .app import Reply, Request, ShopApp, main, mesh_verdict


def build(app: ShopApp) -> None:
    ids = itertools.count(1)

    @app.route("POST", "/orders")
    async def place(request: Request) -> Reply:
        cart = request.json() or {}
        order = next(ids)
        amount = cart.get("amount", 42)
        # The key makes the charge safe to retry: the mesh may re-send it.
        status, body, headers = await app.call(
            "payments",
            "POST",
            "/charge",
            {"order": order, "amount": amount},
            headers={"idempotency-key": f"order-{order}"},
        )
        if not 200 <= status < 300:
            return Reply(
                503,
                {
                    "error": "payment unavailable",
                    "payments_status": status,
                    "reason": body.get("error") if isinstance(body, dict) else None,
                    "mesh": mesh_verdict(headers),
                },
            )
        status, _, headers = await app.call(
            "email", "POST", "/send", {"order": order, "to": cart.get("user", "guest")}
        )
        email = "sent" if 200 <= status < 300 else "deferred"
        return Reply(
            201,
            {"order": order, "charged": body, "email": email, "version": app.version or "v1"},
        )


if __name__ == "__main__":
    main("orders", build)
