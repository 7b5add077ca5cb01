"""One error shape for every failure: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import json
import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.types import Scope

from herald.core import dbfaults
from herald.core.errors import ApiError, ServiceUnavailable

log = logging.getLogger(__name__)

# Seconds a client is asked to wait when the database is away: a dropped connection was already
# retried once, so this is a restart or failover, which takes seconds, not milliseconds.
DATABASE_RETRY_AFTER = 2


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorOut(BaseModel):
    """What every 4xx and 5xx answer carries."""

    error: ErrorDetail


_DESCRIPTIONS = {
    400: "Bad request",
    401: "No valid bearer token",
    403: "The token is valid but may not do this",
    404: "Not found (or not yours)",
    409: "Conflicts with the current state",
    413: "Request body too large",
    422: "Invalid input; `details` names each bad field",
    429: "Rate limited; retry after `Retry-After` seconds",
    503: "A component this needs is down",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, all in the one error shape."""
    return {s: {"model": ErrorOut, "description": _DESCRIPTIONS.get(s, "Error")} for s in statuses}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def _route(request: Request) -> str:
    # The route's template (`/api/signups/verify/{token}`), never the raw path: raw paths can
    # carry tokens, and log lines must not.
    route = request.scope.get("route")
    return getattr(route, "path", None) or "unmatched"


def error_answer(exc: Exception, scope: Scope) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Status, JSON body and extra headers for an `ApiError` or a database that is away, as the
    handlers below answer them, for an ASGI endpoint that answers without FastAPI's routing
    (herald.trigger.endpoints.TriggerFastPath). Anything else is raised again: the
    catch-all's 500."""
    if not isinstance(exc, ApiError):
        if not isinstance(exc, _DATABASE_ERRORS) or not dbfaults.is_unavailable(exc):
            raise exc
        log.warning(
            "http.database_unavailable",
            extra={
                "route": getattr(scope.get("route"), "path", None) or "unmatched",
                "method": scope["method"],
                "error": repr(exc),
            },
        )
        exc = _database_unavailable()
    body = json.dumps(
        error_body(exc.code, exc.message, exc.details), ensure_ascii=False, separators=(",", ":")
    )
    headers = [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (exc.headers or {}).items()
    ]
    return exc.status, body.encode(), headers


def unexpected_answer(scope: Scope) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """The catch-all's 500 (below), for an exception `error_answer` raised again."""
    route = getattr(scope.get("route"), "path", None) or "unmatched"
    log.exception("http.unhandled", extra={"route": route, "method": scope["method"]})
    body = json.dumps(error_body("internal_error", "internal server error"), separators=(",", ":"))
    return 500, body.encode(), []


_DATABASE_ERRORS = (SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


def _database_unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "the database is unavailable; retry shortly",
        DATABASE_RETRY_AFTER,
        code="database_unavailable",
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.message, exc.details), exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {
                # ("body", "email") -> "email"; ("query", "page") -> "page"
                "field": ".".join(str(p) for p in err["loc"][1:]) or str(err["loc"][0]),
                "message": err["msg"],
                "type": err["type"],
            }
            for err in exc.errors()
        ]
        fields = ", ".join(d["field"] for d in details)
        return JSONResponse(error_body("validation_error", f"invalid {fields}", details), 422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # Only FastAPI raises these (we raise ApiError): a body that isn't UTF-8 text.
            # Malformed JSON is a 422 naming `body`, so this is too: one answer for one fault.
            details = [{"field": "body", "message": str(exc.detail), "type": "body_invalid"}]
            return JSONResponse(error_body("validation_error", "invalid body", details), 422)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)

    # Registered for the exception classes (not in the catch-all below) so the answer passes
    # through the middleware: it carries X-Request-ID, and telemetry counts a 503.
    async def database_away(request: Request, exc: Exception) -> JSONResponse:
        if not dbfaults.is_unavailable(exc):
            raise exc  # a bad statement or a bug: the catch-all's 500
        log.warning(
            "http.database_unavailable",
            extra={"route": _route(request), "method": request.method, "error": repr(exc)},
        )
        return await api_error(request, _database_unavailable())

    for kind in _DATABASE_ERRORS:
        app.add_exception_handler(kind, database_away)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("http.unhandled", extra={"route": _route(request), "method": request.method})
        return JSONResponse(error_body("internal_error", "internal server error"), 500)
