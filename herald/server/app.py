"""The ASGI application: FastAPI for HTTP with the Socket.IO server mounted beside it."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import socketio
from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from starlette.types import ASGIApp

from herald import __version__
from herald.accounts.auth_endpoints import router as auth_router
from herald.accounts.deps import credential_live
from herald.accounts.endpoints import router as accounts_router
from herald.apikeys.endpoints import router as apikeys_router
from herald.channels.mailbox_endpoints import router as mailbox_router
from herald.commerce.endpoints import router as commerce_router
from herald.core.redis import client as redis_client
from herald.delivery.endpoints import router as delivery_router
from herald.digests.endpoints import router as digests_router
from herald.inbox.endpoints import router as inbox_router
from herald.monitoring.endpoints import metrics_router
from herald.monitoring.endpoints import router as telemetry_router
from herald.preferences.endpoints import router as preferences_router
from herald.preferences.endpoints import types_router
from herald.preferences.pages import router as unsubscribe_router
from herald.realtime.endpoints import client_router
from herald.realtime.endpoints import router as realtime_router
from herald.runtime import Herald
from herald.server.health import router as health_router
from herald.social.endpoints import router as social_router
from herald.subscribers.endpoints import router as subscribers_router
from herald.telemetry.requests import record_request
from herald.templates.endpoints import router as templates_router
from herald.trigger.endpoints import TriggerFastPath
from herald.trigger.endpoints import router as notifications_router
from herald.web.errors import install_error_handlers
from herald.web.idempotency import Idempotency
from herald.web.middleware import BodySizeLimit, RequestContext
from herald.web.openapi import install_openapi
from herald.web.pages import router as pages_router
from herald.web.pages import static_files
from herald.webhooks.endpoints import router as webhooks_router

ROUTERS = (
    health_router,
    accounts_router,
    auth_router,
    commerce_router,
    social_router,
    notifications_router,
    subscribers_router,
    preferences_router,
    types_router,
    unsubscribe_router,
    mailbox_router,
    apikeys_router,
    webhooks_router,
    templates_router,
    delivery_router,
    digests_router,
    realtime_router,
    client_router,
    inbox_router,
    telemetry_router,
    metrics_router,
    pages_router,
)


def _route(router: APIRouter) -> APIRoute:
    """`POST /api/notifications`, for telemetry's route label on the fast path."""
    for route in router.routes:
        post = isinstance(route, APIRoute) and "POST" in (route.methods or ())
        if post and getattr(route, "path", None) == TriggerFastPath.PATH:
            return route  # type: ignore[return-value]
    raise LookupError(TriggerFastPath.PATH)


def create_app(herald: Herald) -> ASGIApp:
    """The HTTP and Socket.IO app of an API server around `herald` (built with `api=True`),
    which its lifespan starts and stops."""
    settings = herald.settings
    # Idempotency records are binary (compressed), so they get a client that returns bytes.
    idempotency_redis = redis_client(herald.redis_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await herald.start()
        try:
            yield
        finally:
            await herald.stop()
            await idempotency_redis.aclose()

    app = FastAPI(
        title="Herald",
        version=__version__,
        summary="Self-hostable real-time notification backend",
        lifespan=lifespan,
        docs_url=None,  # served by the pages router, from the vendored Swagger UI
        redoc_url=None,  # ReDoc would come from a CDN
    )
    app.state.herald = herald
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", static_files(), name="static")
    install_openapi(app)
    observe_request = functools.partial(record_request, herald.telemetry)
    # Added innermost first: a request meets RequestContext, CORS, the size limit, then the
    # idempotency check, so even a 413 or a replayed answer carries X-Request-ID.
    app.add_middleware(
        Idempotency,
        redis=idempotency_redis,
        ttl_seconds=int(settings.idempotency_ttl_hours * 3600),
        credential_live=functools.partial(credential_live, herald.api_keys, herald.db),
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["X-Request-ID", "X-Served-By", "Retry-After", "Idempotent-Replayed"],
    )
    app.add_middleware(
        RequestContext, server_id=settings.effective_server_id, observe=observe_request
    )
    assert herald.sio is not None
    # The plain trigger skips all of it (TriggerFastPath says how it keeps the same answers).
    return TriggerFastPath(
        socketio.ASGIApp(herald.sio, other_asgi_app=app),
        herald.trigger,
        herald.api_keys,
        observe_request,
        _route(notifications_router),
        server_id=settings.effective_server_id,
        max_bytes=settings.max_body_bytes,
    )
