"""`/unsubscribe/{token}`: the one-click unsubscribe (RFC 8058) and a small preference page.

- `POST /unsubscribe/{token}` (what a mail provider sends, body `List-Unsubscribe=One-Click`,
  form-encoded, no login): the token's recipient stops getting the token's type by email. 200.
- `GET /unsubscribe/{token}`: a page that says what the link does and offers the button (the
  same POST), and a link to the preference page. A GET changes nothing: mail scanners fetch
  links.
- `GET`/`POST /unsubscribe/{token}/preferences`: the recipient's switches as checkboxes. The
  token proves its holder received an email sent to that subscriber, so it opens their email
  and channel switches, as the preference centres of mail senders do; a plain address's token,
  its opt-outs by type.

A token that does not verify answers 400 saying so; one for a subscriber deleted since, 404.
The pages load nothing (no script; inline styles only), under the pages' security headers.
Forms are parsed from the raw body (urllib), so this needs no multipart library.
"""

from __future__ import annotations

from html import escape
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.accounts.models import User
from herald.core import dbfaults
from herald.notifications.unsubscribe import Grant, LinkRefused, Signer
from herald.preferences import service
from herald.preferences.models import ANY
from herald.preferences.rules import CHANNELS, blocked
from herald.preferences.schemas import TYPE
from herald.preferences.service import TypeRegistry
from herald.subscribers import service as subscribers
from herald.web.deps import DbDep, app_state
from herald.web.pages import PAGE_HEADERS

router = APIRouter(prefix="/unsubscribe", include_in_schema=False)

SignerDep = Annotated[Signer, app_state("unsubscribe")]
TypesDep = Annotated[TypeRegistry, app_state("types")]
CHANNEL_LABELS = {"email": "Email", "inapp": "In-app notifications"}


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message


@router.get("/{token}")
async def confirm_page(token: str, db: DbDep, signer: SignerDep) -> HTMLResponse:
    try:
        grant, _ = await _grant(db, signer, token)
    except _Refused as refused:
        return _refusal(refused)
    body = (
        f"<h1>Unsubscribe</h1><p>Stop emails of type <strong>{escape(grant.type)}</strong> "
        f"to <strong>{escape(grant.recipient)}</strong>?</p>"
        f'<form method="post" action="/unsubscribe/{escape(token)}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>'
        f'<p><a href="/unsubscribe/{escape(token)}/preferences">Choose what you receive</a></p>'
    )
    return _page("Unsubscribe", body)


@router.post("/{token}")
async def one_click(token: str, db: DbDep, signer: SignerDep) -> HTMLResponse:
    """Whatever the body: the token alone says who and what, and doing it twice is harmless."""
    try:
        grant, user = await _grant(db, signer, token)
    except _Refused as refused:
        return _refusal(refused)
    if user is not None:
        await service.change(db, user.id, {(grant.type, "email"): False})
    else:
        await service.set_address(db, str(grant.email), {grant.type: False})
    body = (
        f"<h1>Unsubscribed</h1><p><strong>{escape(grant.recipient)}</strong> gets no more "
        f"emails of type <strong>{escape(grant.type)}</strong>.</p>"
        f'<p><a href="/unsubscribe/{escape(token)}/preferences">Choose what you receive</a></p>'
    )
    return _page("Unsubscribed", body)


@router.get("/{token}/preferences")
async def preferences_page(
    token: str, db: DbDep, signer: SignerDep, types: TypesDep
) -> HTMLResponse:
    try:
        grant, user = await _grant(db, signer, token)
    except _Refused as refused:
        return _refusal(refused)
    return await _preferences(db, types, token, grant, user, saved=False)


@router.post("/{token}/preferences")
async def save_preferences(
    token: str, request: Request, db: DbDep, signer: SignerDep, types: TypesDep
) -> HTMLResponse:
    try:
        grant, user = await _grant(db, signer, token)
    except _Refused as refused:
        return _refusal(refused)
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    checked = set(form.get("on", []))
    kinds = _shown_types(form.get("types", [""])[0], grant)
    if user is None:
        await service.set_address(db, str(grant.email), {k: k in checked for k in kinds})
    else:
        switches = await service.read(db, user.id)
        named: dict[tuple[str, str], bool | None] = {}
        for channel in CHANNELS:  # only what the person changed
            was_on = switches.get((ANY, channel), True)
            if was_on != (f"channel:{channel}" in checked):
                named[(ANY, channel)] = None if not was_on else False
        for kind in kinds:
            was_on = blocked(switches, kind, "email") is None
            if was_on != (f"type:{kind}" in checked):
                named[(kind, "email")] = not was_on
        await service.change(db, user.id, named)
    return await _preferences(db, types, token, grant, user, saved=True)


async def _grant(
    db: async_sessionmaker[AsyncSession], signer: Signer, token: str
) -> tuple[Grant, User | None]:
    try:
        grant = signer.verify(token)
    except LinkRefused as refused:
        raise _Refused(400, str(refused)) from None
    if grant.user_id is not None:
        user_id = grant.user_id
        user = await dbfaults.read(db, lambda s: s.get(User, user_id))
    elif grant.subscriber_id is not None:
        subscriber_id = grant.subscriber_id
        user = await dbfaults.read(db, lambda s: subscribers.find(s, subscriber_id))
    else:
        return grant, None
    if user is None:
        raise _Refused(404, "this subscriber no longer exists: there is nothing to unsubscribe")
    return grant, user


def _shown_types(listed: str, grant: Grant) -> list[str]:
    """The types the page showed (a hidden field), each a valid type name; the token's first."""
    kinds = [grant.type]
    for kind in listed.split(","):
        if kind and kind not in kinds and TYPE.fullmatch(kind):
            kinds.append(kind)
    return kinds[:200]


async def _preferences(
    db: async_sessionmaker[AsyncSession],
    types: TypeRegistry,
    token: str,
    grant: Grant,
    user: User | None,
    *,
    saved: bool,
) -> HTMLResponse:
    rows: list[str] = []
    if user is None:
        async with db() as session:
            off = await service.address_opted_out(session, str(grant.email))
        kinds = [grant.type, *sorted(off - {grant.type})]
        for kind in kinds:
            rows.append(_checkbox(f"type:{kind}", f"Emails of type {kind}", kind not in off))
    else:
        switches = await service.read(db, user.id)
        rows.append("<h2>Channels</h2>")
        for channel in CHANNELS:
            on = switches.get((ANY, channel), True)
            rows.append(_checkbox(f"channel:{channel}", CHANNEL_LABELS[channel], on))
        declared = [t.type for t in await types.listed() if not t.critical]
        chosen = {k for k, _ in switches if k != ANY}
        kinds = [grant.type, *sorted((chosen | set(declared)) - {grant.type})]
        rows.append("<h2>Emails by type</h2>")
        for kind in kinds:
            on = blocked(switches, kind, "email") is None
            rows.append(_checkbox(f"type:{kind}", kind, on))
    body = (
        f"<h1>What {escape(grant.recipient)} receives</h1>"
        + ("<p><strong>Saved.</strong></p>" if saved else "")
        + f'<form method="post" action="/unsubscribe/{escape(token)}/preferences">'
        + "".join(rows)
        + f'<input type="hidden" name="types" value="{escape(",".join(kinds))}">'
        + '<p><button type="submit">Save</button></p></form>'
        + "<p>Security messages (sign-ins, password resets) are always sent.</p>"
    )
    return _page("Preferences", body)


def _checkbox(name: str, label: str, on: bool) -> str:
    checked = " checked" if on else ""
    return (
        f'<p><label><input type="checkbox" name="on" value="{escape(name)}"{checked}> '
        f"{escape(label)}</label></p>"
    )


def _refusal(refused: _Refused) -> HTMLResponse:
    body = f"<h1>This link does not work</h1><p>{escape(refused.message)}</p>"
    return _page("Unsubscribe", body, refused.status)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} - Herald</title></head>"
        '<body style="font-family:system-ui,sans-serif;max-width:560px;margin:auto;padding:24px">'
        f"{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
