"""Payments: ``POST /charge`` charges a card on CardNet, the card network.

CardNet is outside the mesh (``external.cardnet`` in mesh.yaml): payments
calls ``POST http://cardnet/charges`` in plain HTTP through its sidecar, which
originates the TLS to it and applies ``policies.cardnet`` (timeout, retries,
breaker). When CardNet does not authorize the charge (down, slow, or the
breaker open), the charge fails: 402 ``card network unavailable``, saying
whether the mesh answered for CardNet (circuit open, overflow). That is the
charge failing, not payments (a payment API answers a card that cannot be
charged with 402, as Stripe does): orders' sidecar neither retries it nor
counts it against payments' breaker, and the breaker on cardnet in payments'
own sidecar keeps payments from waiting on a network that is down. The demo
takes CardNet down, and later makes payments itself fail (503).
"""

from __future__ import annotations

import itertools

from .app import Reply, Request, ShopApp, main, mesh_verdict


def build(app: ShopApp) -> None:
    ids = itertools.count(1)

    @app.route("POST", "/charge")
    async def charge(request: Request) -> Reply:
        doc = request.json() or {}
        order = doc.get("order")
        # The caller's key goes on: the mesh may re-send a charge that got no answer.
        key = request.headers.get("idempotency-key")
        status, body, headers = await app.call(
            "cardnet",
            "POST",
            "/charges",
            {"amount": doc.get("amount"), "reference": f"order-{order}"},
            headers={"idempotency-key": key} if key else None,
        )
        if not 200 <= status < 300 or not isinstance(body, dict):
            return Reply(
                402,
                {
                    "error": "card network unavailable",
                    "cardnet_status": status,
                    "mesh": mesh_verdict(headers),
                },
            )
        return Reply(
            200,
            {
                "charge": next(ids),
                "order": order,
                "status": "captured",
                "authorization": body.get("id"),
            },
        )


if __name__ == "__main__":
    main("payments", build)
