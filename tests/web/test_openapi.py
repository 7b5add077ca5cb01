"""/openapi.json describes every endpoint: its request, its answers, its security."""

from __future__ import annotations

from tests.fixtures.herald import RunningHerald

SEED_OPERATIONS = {
    ("get", "/api/health"),
    ("post", "/api/signups"),
    ("get", "/api/signups"),
    ("post", "/api/signups/verify/{token}"),
    ("get", "/api/signups/{userId}/welcome-email-status"),
    ("get", "/api/signups/statistics"),
    ("get", "/api/signups/welcome-emails/failed"),
    ("post", "/api/logins"),
    ("get", "/api/logins"),
    ("get", "/api/logins/alert-emails/failed"),
    ("post", "/api/session"),
    ("get", "/api/session/{userId}"),
    ("delete", "/api/session"),
    ("post", "/api/reset-passwords"),
    ("post", "/api/reset-passwords/confirm"),
    ("post", "/api/purchases"),
    ("post", "/api/friend-requests"),
    ("get", "/api/friend-requests"),
    ("get", "/api/friend-requests/{friendRequestId}"),
    ("delete", "/api/friend-requests/{friendRequestId}"),
    ("patch", "/api/friend-requests/{friendRequestId}/accept"),
    ("patch", "/api/friend-requests/{friendRequestId}/reject"),
    ("patch", "/api/friend-requests/{friendRequestId}/cancel"),
    ("patch", "/api/friend-requests/{friendRequestId}/block"),
    ("get", "/api/friend-requests/user/{userId}/pending"),
    ("get", "/api/friend-requests/user/{userId}/sent"),
    ("get", "/api/friend-requests/user/{userId}/friends"),
    ("get", "/api/friend-requests/statistics"),
    ("get", "/api/friend-requests/notifications/failed"),
    ("get", "/api/friend-requests/notifications/pending"),
    ("post", "/api/friend-requests/cleanup"),
    ("post", "/api/notifications"),
}


class TestOpenApi:
    async def test_every_seed_endpoint_is_described_with_models(
        self, herald: RunningHerald
    ) -> None:
        doc = (await herald.http.get("/openapi.json")).json()
        operations = {
            (method, path): op for path, item in doc["paths"].items() for method, op in item.items()
        }
        assert set(operations) >= SEED_OPERATIONS
        for (method, path), op in operations.items():
            if not path.startswith("/api/") or path.startswith("/api/ops"):
                continue  # the ops API is described by its own issue
            success = [s for s in op["responses"] if s.startswith("2")]
            assert success, (method, path)
            for status in success:
                if status != "204":
                    content = op["responses"][status]["content"]["application/json"]
                    assert content["schema"], (method, path, status)
            for status, answer in op["responses"].items():
                if status.startswith(("4", "5")) and status != "503":
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (path, status)
            if method == "post":
                names = [p["name"] for p in op.get("parameters", [])]
                assert "Idempotency-Key" in names, path
                assert {"409", "413", "422"} <= set(op["responses"]), path
            if op.get("security"):
                assert {"401", "403"} <= set(op["responses"]), path
        schemes = doc["components"]["securitySchemes"]
        assert schemes["SessionToken"]["scheme"] == schemes["AdminToken"]["scheme"] == "bearer"
        assert "HTTPValidationError" not in doc["components"]["schemas"]

    async def test_docs_page_is_served(self, herald: RunningHerald) -> None:
        r = await herald.http.get("/docs")
        assert r.status_code == 200 and "swagger" in r.text.lower()
