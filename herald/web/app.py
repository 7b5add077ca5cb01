"""The ASGI application: FastAPI for HTTP with the Socket.IO server mounted beside it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import socketio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from herald import __version__
from herald.accounts.endpoints import router as accounts_router
from herald.accounts.failures import router as failures_router
from herald.core.config import Settings
from herald.delivery.endpoints import router as delivery_router
from herald.realtime.endpoints import router as realtime_router
from herald.runtime import Herald
from herald.web.errors import install_error_handlers
from herald.web.health import router as health_router
from herald.web.middleware import RequestContext
from herald.web.ops import router as ops_router


def create_app(settings: Settings, *, api: bool = True, workers: bool = True) -> ASGIApp:
    herald = Herald(settings, api=api, workers=workers)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await herald.start()
        try:
            yield
        finally:
            await herald.stop()

    app = FastAPI(
        title="Herald",
        version=__version__,
        summary="Self-hostable real-time notification backend",
        lifespan=lifespan,
    )
    app.state.herald = herald
    install_error_handlers(app)
    routers = (
        health_router, accounts_router, failures_router, ops_router, delivery_router,
        realtime_router,
    )  # fmt: skip
    for router in routers:
        app.include_router(router)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["X-Request-ID", "X-Served-By", "Retry-After"],
    )
    app.add_middleware(RequestContext, server_id=settings.effective_server_id)
    assert herald.sio is not None
    return socketio.ASGIApp(herald.sio, other_asgi_app=app)
