"""The two web pages Herald serves: the demo client at `/` and the operations dashboard at
`/dashboard`, with their static files under `/static`. Everything they load is in
`herald/web/static` (the Socket.IO client is vendored from npm by `make web-assets`), so they
work with no network beyond Herald itself."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def demo_client() -> FileResponse:
    return FileResponse(STATIC / "index.html")


@router.get("/dashboard")
async def dashboard() -> FileResponse:
    return FileResponse(STATIC / "dashboard.html")


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC)
