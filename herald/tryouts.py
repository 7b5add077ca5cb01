"""`herald try`: end-to-end walkthroughs a person runs against a live Herald.

`herald try login-notification` signs up a user, logs in and watches the login alert arrive on
the socket; `friend-request-notification` sends a friend request, accepts it and watches both
sides hear of it live; `notification-toast` checks the demo page is served, makes a purchase and
watches the toast's notification arrive. Each makes fresh users through the public API, connects
real Socket.IO clients, does what a person would, and prints every step as it happens; the first
step that fails ends the run with exit status 1.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import socketio

Say = Callable[[str], None]


class StepFailed(Exception):
    """A step did not do what it should; the message says what happened instead."""


class Tryout:
    """A live Herald at `url`, with helpers that print what they do."""

    def __init__(self, url: str, say: Say, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.say = say
        self.timeout = timeout
        self.stack = AsyncExitStack()
        self.http: aiohttp.ClientSession | None = None
        self.run_id = secrets.token_hex(3)

    async def __aenter__(self) -> Tryout:
        self.http = await self.stack.enter_async_context(
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stack.aclose()

    async def step(self, what: str, action: Awaitable[Any]) -> Any:
        """Run one step and print it with its outcome and time."""
        begun = time.perf_counter()
        try:
            result = await asyncio.wait_for(action, self.timeout)
        except TimeoutError:
            self.say(f"  FAILED  {what}: nothing within {self.timeout:g} s")
            raise StepFailed(what) from None
        except (StepFailed, aiohttp.ClientError, socketio.exceptions.SocketIOError) as exc:
            self.say(f"  FAILED  {what}: {exc}")
            raise StepFailed(what) from None
        ms = (time.perf_counter() - begun) * 1000
        detail = f" ({result})" if isinstance(result, str) else ""
        self.say(f"  ok      {what}{detail}  [{ms:.0f} ms]")
        return result

    async def call(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> dict[str, Any]:
        assert self.http is not None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(
            method, self.url + path, json=body, headers=headers
        ) as response:
            data: dict[str, Any] = await response.json(content_type=None) or {}
            if response.status >= 400:
                message = (data.get("error") or {}).get("message") or response.reason
                raise StepFailed(f"{method} {path} answered {response.status}: {message}")
            return data

    async def user(self, role: str) -> dict[str, Any]:
        """A fresh account with a session token."""
        name = f"try_{role}_{self.run_id}"
        password = secrets.token_urlsafe(12)
        body = {"username": name, "email": f"{name}@example.com", "password": password}
        signup = await self.call("POST", "/api/signups", body)
        session = await self.call(
            "POST", "/api/session", {"email": body["email"], "password": password}
        )
        return {**signup, **body, "token": session["sessionToken"]}

    async def socket(self, user: dict[str, Any]) -> Listener:
        listener = Listener()
        await listener.connect(self.url, user["token"], self.timeout)
        self.stack.push_async_callback(listener.close)
        return listener


class Listener:
    """A Socket.IO client that keeps every `notification:new` it receives."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.signed_in: asyncio.Future[dict[str, Any]] = asyncio.Future()
        self.notifications: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sio.on("auth:success", self._signed_in)
        self.sio.on("auth:error", self._refused)
        self.sio.on("notification:new", self.notifications.put)

    async def _signed_in(self, data: dict[str, Any]) -> None:
        if not self.signed_in.done():
            self.signed_in.set_result(data)

    async def _refused(self, data: dict[str, Any]) -> None:
        if not self.signed_in.done():
            self.signed_in.set_exception(StepFailed(f"auth:error {data}"))

    async def connect(self, url: str, token: str, timeout: float) -> dict[str, Any]:
        await self.sio.connect(url, auth={"token": token}, wait_timeout=timeout)
        return await self.signed_in

    async def notification(self, kind: str) -> dict[str, Any]:
        """The next `notification:new` of this type, acknowledged as a client should."""
        while True:
            n = await self.notifications.get()
            if n["type"] == kind:
                await self.sio.call("notification:ack", {"id": n["id"]})
                return n

    async def close(self) -> None:
        await self.sio.disconnect()


async def _arrives(listener: Listener, kind: str) -> str:
    n = await listener.notification(kind)
    return f"#{n['id']} {n['title']!r}: {n['message']}"


async def _delivered(t: Tryout, user: dict[str, Any], kind: str) -> str:
    """The recipient's own record of the newest notification of `kind` says it was delivered."""
    inbox = await t.call("GET", "/api/me/notifications?limit=50", token=user["token"])
    newest = next((n for n in inbox["items"] if n["type"] == kind), None)
    if newest is None:
        raise StepFailed(f"no {kind} notification in the inbox")
    record = await t.call("GET", f"/api/notifications/inapp/{newest['id']}", token=user["token"])
    if record["status"] != "delivered":
        raise StepFailed(f"#{newest['id']} is {record['status']}")
    return f"#{record['id']} delivered via {record['deliveredVia']}, acknowledged"


async def login_notification(t: Tryout) -> None:
    """A login sends the user a login alert in real time (test-login-notification.js)."""
    user = await t.step("sign up a fresh user", t.user("login"))
    tab = await t.step("connect a Socket.IO client as that user", t.socket(user))
    login = await t.step(
        "log in (POST /api/logins)",
        t.call("POST", "/api/logins", {"email": user["email"], "password": user["password"]}),
    )
    t.say(f"          login alert email: {login['loginAlertEmail']['status']}")
    await t.step("the login notification arrives on the socket", _arrives(tab, "login"))
    await t.step("its record says delivered", _eventually(lambda: _delivered(t, user, "login")))


async def friend_request_notification(t: Tryout) -> None:
    """A friend request reaches its recipient live, and the acceptance reaches the sender
    (test-friend-request-notification.js)."""
    alice = await t.step("sign up the sender", t.user("alice"))
    bob = await t.step("sign up the recipient", t.user("bob"))
    alice_tab = await t.step("connect the sender", t.socket(alice))
    bob_tab = await t.step("connect the recipient", t.socket(bob))
    request = await t.step(
        "send a friend request (POST /api/friend-requests)",
        t.call(
            "POST",
            "/api/friend-requests",
            {"toUsername": bob["username"], "message": "met at herald try"},
            token=alice["token"],
        ),
    )
    await t.step("the recipient gets it live", _arrives(bob_tab, "friend_request"))
    await t.step(
        "the recipient accepts it",
        t.call(
            "PATCH", f"/api/friend-requests/{request['friendRequestId']}/accept", token=bob["token"]
        ),
    )
    await t.step("the sender hears of it live", _arrives(alice_tab, "friend_request_accepted"))
    await t.step(
        "the recipient's record says delivered",
        _eventually(lambda: _delivered(t, bob, "friend_request")),
    )


async def notification_toast(t: Tryout) -> None:
    """What the demo page's toast shows reaches the browser's socket (verify-notification-
    toast.js): the page and its client are served, and a purchase notification carries a toast's
    title and message."""

    async def page() -> str:
        assert t.http is not None
        for path in (
            "/",
            "/static/js/client.js",
            "/static/vendor/herald-client.js",
            "/static/vendor/socket.io.esm.min.js",
        ):
            async with t.http.get(t.url + path) as response:
                if response.status != 200:
                    raise StepFailed(f"GET {path} answered {response.status}")
        return "/, its script, Herald's JS client and the Socket.IO client"

    await t.step("the demo page is served", page())
    user = await t.step("sign up a fresh user", t.user("toast"))
    tab = await t.step("connect as that user", t.socket(user))
    await t.step(
        "make a purchase (POST /api/purchases)",
        t.call(
            "POST",
            "/api/purchases",
            {"items": [{"name": "Herald sticker", "quantity": 1, "unitAmount": 250}]},
            token=user["token"],
        ),
    )

    async def toast() -> str:
        n = await tab.notification("purchase")
        missing = [k for k in ("id", "title", "message", "priority", "createdAt") if not n.get(k)]
        if missing:
            raise StepFailed(f"the notification lacks {missing}")
        return f"toast: {n['title']!r} / {n['message']!r}"

    await t.step("the notification carries what the toast shows", toast())
    t.say(f"          see it yourself: open {t.url}/ and log in as {user['username']}")


async def _eventually(check: Callable[[], Awaitable[str]], every: float = 0.2) -> str:
    """Ask again while the answer is a StepFailed (the step's timeout bounds it)."""
    while True:
        try:
            return await check()
        except StepFailed:
            await asyncio.sleep(every)


TRYOUTS: dict[str, Callable[[Tryout], Awaitable[None]]] = {
    "login-notification": login_notification,
    "friend-request-notification": friend_request_notification,
    "notification-toast": notification_toast,
}


async def run(name: str, url: str, say: Say, timeout: float = 15.0) -> bool:
    say(f"herald try {name} against {url}")
    try:
        async with Tryout(url, say, timeout) as t:
            await TRYOUTS[name](t)
    except StepFailed:
        say("failed")
        return False
    say("passed")
    return True
