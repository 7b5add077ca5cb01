"""The two web pages Herald serves: the demo client at `/` and the operations dashboard at
`/dashboard`, with their static files under `/static`. Everything they load is in
`herald/web/static` (the Socket.IO client is vendored from npm by `make web-assets`), so they
work with no network beyond Herald itself."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
SWAGGER_UI = "/static/vendor/swagger-ui"

router = APIRouter(include_in_schema=False)

# The pages load only Herald's own files and talk only to Herald: a script injected into them
# could load nothing else and send nothing elsewhere, and no other site may frame them (the
# dashboard holds the admin token). Inline style attributes are allowed; inline scripts not.
PAGE_HEADERS = {
    "Content-Security-Policy": "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@router.get("/")
async def demo_client() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


@router.get("/dashboard")
async def dashboard() -> FileResponse:
    return FileResponse(STATIC / "dashboard.html", headers=PAGE_HEADERS)


@router.get("/docs")
async def docs() -> HTMLResponse:
    """Swagger UI from Herald's own copy (`make web-assets`), not a CDN: it works offline."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Herald - API",
        swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
        swagger_favicon_url="data:,",
    )


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC)
