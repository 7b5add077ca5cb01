"""The OpenAPI document, completed with what middleware and dependencies add to every route.

FastAPI documents what a route declares. It can't see that every POST honours
`Idempotency-Key` and may answer 409/413, that every secured route may answer 401/403, or that
our 422 has the one error shape rather than FastAPI's own; this fills those in, so a client
written from `/docs` (and schemathesis) sees every answer the server can give.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from herald.web.errors import _DESCRIPTIONS, ErrorOut

ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}
IDEMPOTENCY_PARAMETER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Repeat a POST safely: a repeat with the same key (same caller, path and "
    "body) within 24 h gets the first response instead of running again.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
}
BODY_METHODS = {"post", "put", "patch"}


def _error_response(status: int) -> dict[str, Any]:
    return {
        "description": _DESCRIPTIONS.get(status, "Error"),
        "content": {"application/json": {"schema": ERROR_REF}},
    }


def _complete(operation: dict[str, Any], method: str) -> None:
    responses = operation.setdefault("responses", {})
    # FastAPI's own 422 schema (HTTPValidationError) is not what we send.
    responses["422"] = _error_response(422)
    extra = []
    if operation.get("security"):
        extra += [401, 403]
    if method in BODY_METHODS:
        extra.append(413)
    if method == "post":
        extra.append(409)  # an Idempotency-Key whose first request is still running
        parameters = operation.setdefault("parameters", [])
        if not any(p.get("name") == "Idempotency-Key" for p in parameters):
            parameters.append(IDEMPOTENCY_PARAMETER)
    for status in extra:
        responses.setdefault(str(status), _error_response(status))


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(
            ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}").pop("$defs")
        )
        components["ErrorOut"] = ErrorOut.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        components["ErrorOut"].pop("$defs", None)
        for path_item in schema.get("paths", {}).values():
            for method, operation in path_item.items():
                if method in {"get", "post", "put", "patch", "delete"}:
                    _complete(operation, method)
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
