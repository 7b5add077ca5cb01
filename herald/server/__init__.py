"""The assembled HTTP server: every package's routers and the request middleware in one ASGI
app around the running Herald (`app`), its health check (`health`), and the uvicorn server it
runs in (`http`). The top of the import graph: nothing in Herald imports it but the CLI."""
