"""The generic trigger, `POST /api/notifications`, and one notification's whole record."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status
from starlette.types import ASGIApp, Receive, Scope, Send

from herald.accounts.deps import CallerDep
from herald.apikeys.deps import TriggerKeyDep, remember
from herald.apikeys.models import Scope as KeyScope
from herald.apikeys.service import KeyCache, Principal
from herald.core.client import ClientInfo
from herald.core.errors import NotFound
from herald.notifications.models import Channel, InAppNotification
from herald.trigger import records
from herald.trigger.service import Trigger, TriggerIn, TriggerOut
from herald.web.asgi import read_body, replay_receive, respond
from herald.web.deps import ClientDep, DbDep, app_state
from herald.web.errors import error_answer, errors, unexpected_answer
from herald.web.middleware import RequestContext, RequestObserver

router = APIRouter(prefix="/api", tags=["notifications"])
TriggerDep = Annotated[Trigger, app_state("trigger")]


@router.post("/notifications", status_code=status.HTTP_201_CREATED)
async def create_notifications(
    data: TriggerIn, trigger: TriggerDep, client: ClientDep, key: TriggerKeyDep
) -> TriggerOut:
    """Send a notification of any type to one or many recipients by email and/or in-app.
    Called by the application's backend with an API key holding the `trigger` scope (or the
    admin token). Recipients are `{userId}`, `{subscriberId}` (an unknown one is created when
    it comes with an `email`) or `{email}` alone. Answers with one entry per created
    notification (recipient x channel); each is committed before it is queued."""
    return await trigger(data, client, key.key_id)


@router.get(
    "/notifications/{channel}/{notificationId}",
    response_model=records.EmailRecord | records.InAppRecord | records.WebhookRecord,
    responses=errors(401, 404),
)
async def show_notification(
    channel: Channel,
    notification_id: Annotated[int, Path(alias="notificationId", ge=1, le=2**31 - 1)],
    db: DbDep,
    caller: CallerDep,
) -> records.Record:
    """One notification, whole: every field of its record, the content, and its audit
    trail under `metadata`. The admin token sees any; a user sees their own in-app ones."""
    async with db() as session:
        n = await records.load(session, channel, notification_id)
        # Another user's notification (or any email, for a user) is as absent as a missing one,
        # so ids cannot be probed.
        mine = isinstance(n, InAppNotification) and caller.may_see(n.user_id)
        if n is None or not (caller.is_admin or mine):
            raise NotFound(f"no {channel.value} notification {notification_id}")
        return await records.record(session, n)


class TriggerFastPath:
    """`POST /api/notifications` answered without the general HTTP stack (Socket.IO's ASGI
    dispatch, FastAPI's middleware, routing, dependency solving and response validation),
    which cost more CPU than the trigger's own work (profiled: route matching over every
    route, the bearer dependencies, validating and encoding the answer, a send wrapper per
    middleware layer).

    It wraps the whole application and takes only the plain case: no `Idempotency-Key` (that
    check stays in its middleware), no `Origin` (CORS stays in its middleware), a declared
    body within the size limit, an `Authorization: Bearer` credential allowed to trigger and a
    JSON body that validates. Anything else goes to the full stack unchanged, where the FastAPI
    route (the one /docs describes) answers it and every refusal; so the answers are the same
    either way. The request id, the `X-Request-ID`/`X-Served-By` headers and the request's
    telemetry come from the same `RequestContext` as on the full stack; errors the trigger
    raises (an unknown recipient, the database away) are rendered as the error handlers render
    them (herald.web.errors), anything else as the catch-all's 500."""

    PATH = "/api/notifications"

    def __init__(
        self,
        app: ASGIApp,
        trigger: Trigger,
        api_keys: KeyCache,
        observe: RequestObserver,
        route: object,
        *,
        server_id: str,
        max_bytes: int,
    ) -> None:
        self.app = app  # the full stack
        self.trigger = trigger
        self.api_keys = api_keys
        self.route = route  # telemetry labels the request by it, as for a routed one
        self.max_bytes = max_bytes
        self._plain = RequestContext(self._trigger, server_id, observe)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        principal = await self._principal(scope)
        if principal is None:
            await self.app(scope, receive, send)
            return
        body, complete = await read_body(receive)
        if not complete:
            return  # the client went away
        try:
            data = TriggerIn.model_validate_json(body)
        except ValueError:  # FastAPI's route gives the 422 naming each field
            await self.app(scope, replay_receive(body, receive), send)
            return
        remember(scope.setdefault("state", {}), principal)
        scope["route"] = self.route
        scope[_TRIGGER] = data
        await self._plain(scope, receive, send)

    async def _trigger(self, scope: Scope, receive: Receive, send: Send) -> None:
        data: TriggerIn = scope.pop(_TRIGGER)
        state = scope["state"]
        headers = dict(scope["headers"])
        client = scope.get("client")
        agent = headers.get(b"user-agent")
        info = ClientInfo(
            ip_address=client[0] if client else None,
            user_agent=agent.decode("latin-1") if agent is not None else None,
            telemetry_id=state.get("request_id"),
        )
        try:
            out = await self.trigger(data, info, state["api_key_id"])
        except Exception as exc:
            try:
                code, payload, extra = error_answer(exc, scope)
            except Exception:  # not ours: the catch-all's answer (herald.web.errors)
                code, payload, extra = unexpected_answer(scope)
            await respond(send, code, payload, extra)
            return
        await respond(send, status.HTTP_201_CREATED, out.model_dump_json(by_alias=True).encode())

    async def _principal(self, scope: Scope) -> Principal | None:
        """The caller, when the request is plain and they may trigger; None sends the request
        the full stack's way."""
        token = ""
        declared = False
        for name, value in scope["headers"]:
            if name in _NOT_PLAIN:
                return None
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() != "bearer":
                    return None
            elif name == b"content-type":
                if not value.lower().startswith(b"application/json"):
                    return None
            elif name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    return None
                declared = True
        if not token or not declared:
            return None
        principal = await self.api_keys.principal(token)
        if principal is None or not principal.allows(KeyScope.TRIGGER):
            return None
        return principal


_TRIGGER = "herald.trigger"  # the validated body, from the check to the answer
# Headers whose handling lives in the full stack's middleware.
_NOT_PLAIN = frozenset({b"idempotency-key", b"origin", b"transfer-encoding"})
