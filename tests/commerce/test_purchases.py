"""Purchases: a receipt email and an in-app notification, tracked on the purchase like a login."""

from __future__ import annotations

from email import message_from_bytes, policy

from tests.fixtures.herald import RunningHerald
from tests.fixtures.smtp import SmtpSink
from tests.fixtures.waiting import eventually

BASKET = {
    "items": [
        {"name": "Lamp <Deluxe>", "quantity": 2, "unitAmount": 1999},
        {"name": "Bulb", "quantity": 3, "unitAmount": 250},
    ],
    "currency": "EUR",
    "orderReference": "ORD-1001",
}


class TestPurchase:
    async def test_receipt_email_and_inapp_are_sent_and_tracked(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        buyer = await herald.member()
        r = await herald.http.post("/api/purchases", json=BASKET, headers=buyer["auth"])
        assert r.status_code == 201, r.text
        purchase = r.json()
        assert purchase["userId"] == buyer["userId"] and purchase["totalAmount"] == 4748
        assert purchase["orderReference"] == "ORD-1001" and purchase["currency"] == "EUR"
        assert purchase["items"] == BASKET["items"] and purchase["status"] == "completed"
        assert purchase["receiptEmail"]["type"] == "purchase"
        assert purchase["receiptEmail"]["subject"] == "Your receipt for order ORD-1001"
        assert purchase["purchaseInAppNotification"]["title"] == "Purchase confirmed"

        async def receipt() -> str | None:
            for envelope in smtp.to(buyer["email"]):
                m = message_from_bytes(envelope.original_content, policy=policy.default)
                if m["Subject"] == "Your receipt for order ORD-1001":
                    html = m.get_body(("html",)).get_content()  # type: ignore[union-attr]
                    text = m.get_body(("plain",)).get_content()  # type: ignore[union-attr]
                    return f"{text}\n{html}"
            return None

        body = await eventually(receipt)
        assert "2 x Lamp <Deluxe> @ 19.99 EUR" in body  # plain text as it is
        assert "Lamp &lt;Deluxe&gt;" in body  # HTML escaped
        assert "Total: 47.48 EUR" in body

        async def delivered() -> dict | None:
            r = await herald.http.get(
                f"/api/purchases/{purchase['purchaseId']}", headers=buyer["auth"]
            )
            email = r.json()["receiptEmail"]
            return email if email["status"] == "delivered" else None

        email = await eventually(delivered)
        assert email["deliveryHistory"][-1]["status"] == "delivered" and email["messageId"]

    async def test_order_reference_is_made_when_missing(self, herald: RunningHerald) -> None:
        buyer = await herald.member()
        r = await herald.http.post(
            "/api/purchases",
            json={"items": [{"name": "Pen", "quantity": 1, "unitAmount": 100}]},
            headers=buyer["auth"],
        )
        assert r.status_code == 201 and r.json()["orderReference"].startswith("ORD-")
        assert r.json()["currency"] == "USD"

    async def test_list_is_your_own(self, herald: RunningHerald) -> None:
        alice, eve = await herald.member(), await herald.member()
        for _ in range(3):
            await herald.http.post("/api/purchases", json=BASKET, headers=alice["auth"])
        mine = await herald.http.get("/api/purchases", params={"limit": 2}, headers=alice["auth"])
        body = mine.json()
        assert (body["total"], len(body["items"]), body["pages"]) == (3, 2, 2)
        theirs = await herald.http.get("/api/purchases", headers=eve["auth"])
        assert theirs.json()["total"] == 0
        peek = await herald.http.get(
            "/api/purchases", params={"userId": alice["userId"]}, headers=eve["auth"]
        )
        assert peek.status_code == 403
        admin = await herald.http.get(
            "/api/purchases", params={"userId": alice["userId"]}, headers=herald.admin()
        )
        assert admin.json()["total"] == 3

    async def test_another_users_purchase_is_404(self, herald: RunningHerald) -> None:
        alice, eve = await herald.member(), await herald.member()
        r = await herald.http.post("/api/purchases", json=BASKET, headers=alice["auth"])
        path = f"/api/purchases/{r.json()['purchaseId']}"
        stolen = await herald.http.get(path, headers=eve["auth"])
        assert stolen.status_code == 404 and "ORD-1001" not in stolen.text
        assert (await herald.http.get(path, headers=herald.admin())).status_code == 200
        assert (await herald.http.get(path)).status_code == 401

    async def test_bad_input_names_the_field(self, herald: RunningHerald) -> None:
        buyer = await herald.member()
        cases = [
            ({"items": []}, "items"),
            ({"items": [{"name": "x", "quantity": 0, "unitAmount": 1}]}, "items.0.quantity"),
            ({"items": [{"name": "x", "quantity": 1, "unitAmount": -5}]}, "items.0.unitAmount"),
            ({**BASKET, "currency": "euro"}, "currency"),
        ]
        for body, field in cases:
            r = await herald.http.post("/api/purchases", json=body, headers=buyer["auth"])
            assert r.status_code == 422, r.text
            assert [d["field"] for d in r.json()["error"]["details"]] == [field]
        assert (await herald.http.post("/api/purchases", json=BASKET)).status_code == 401
