"""Who made a request, as the services that record it need to know."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ClientInfo:
    """The caller's address and user agent (kept on logins and sessions), and the request's
    telemetry id (the notifications it makes join that request's timeline)."""

    ip_address: str | None
    user_agent: str | None
    telemetry_id: str | None
