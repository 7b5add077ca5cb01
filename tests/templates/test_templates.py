"""Templates an operator changes: stored per type and locale, rendered in Jinja2's sandbox,
picked by the recipient's locale, checked at save, previewed, and live on every server.

Every email here is read from the real SMTP server the test runs. The session's PostgreSQL
database is shared by the tests, so each uses a notification type of its own, and the one
test that stores a domain type's template (signup) deletes it again."""

from __future__ import annotations

import asyncio
import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

from herald.templates.store import CHECK_SECONDS
from tests.fixtures.herald import RunningHerald, bearer, make_settings, start_herald
from tests.fixtures.smtp import SmtpSink
from tests.fixtures.waiting import eventually


def new_type() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


async def put_template(herald: RunningHerald, kind: str, locale: str, **parts: str) -> Any:
    body = {"subject": "{{ title }}", "text": "{{ message }}\n", "html": "<p>{{ message }}</p>"}
    return await herald.http.put(
        f"/api/templates/{kind}/{locale}", json={**body, **parts}, headers=herald.admin()
    )


async def subscriber(herald: RunningHerald, locale: str | None) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    sid, email = f"sub-{tag}", f"sub-{tag}@example.com"
    r = await herald.http.put(
        f"/api/subscribers/{sid}", json={"email": email, "locale": locale}, headers=herald.admin()
    )
    assert r.status_code == 201, r.text
    return sid, email


async def trigger(
    herald: RunningHerald, kind: str, recipients: list[dict[str, Any]], **kw: Any
) -> None:
    body = {
        "recipients": recipients,
        "type": kind,
        "title": "Title",
        "message": "Message",
        "channels": ["email"],
        **kw,
    }
    r = await herald.http.post("/api/notifications", json=body, headers=herald.admin())
    assert r.status_code == 201, r.text


async def received(smtp: SmtpSink, address: str, count: int = 1) -> EmailMessage:
    envelope = (await smtp.wait_for(address, count=count))[count - 1]
    message = message_from_bytes(envelope.original_content, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def part(message: EmailMessage, kind: str) -> str:
    body = message.get_body((kind,))
    assert body is not None
    return str(body.get_content())  # type: ignore[attr-defined]


def error_details(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 422, response.text
    return response.json()["error"]["details"]  # type: ignore[no-any-return]


class TestStoredTemplates:
    async def test_a_stored_signup_template_changes_the_email_and_delete_restores_the_builtin(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        r = await put_template(
            herald,
            "signup",
            "en",
            subject="Hello {{ username }}, one step left",
            text="Confirm here: {{ verify_url }}\n",
            html='<p>Confirm <a href="{{ verify_url }}">here</a>, {{ username }}.</p>',
        )
        assert r.status_code == 201, r.text
        assert r.json()["source"] == "stored" and r.json()["updatedBy"] == "admin"
        try:
            user = await herald.signup()
            message = await received(smtp, user["email"])
            assert message["Subject"] == f"Hello {user['username']}, one step left"
            assert part(message, "plain").startswith("Confirm here: http")
            html = part(message, "html")
            assert "Confirm <a href=" in html and "Sent by Herald." in html  # in the layout
        finally:
            gone = await herald.http.delete("/api/templates/signup/en", headers=herald.admin())
            assert gone.status_code == 200, gone.text
        assert gone.json() == {"type": "signup", "locale": "en", "deleted": True}
        again = await herald.signup()
        assert (await received(smtp, again["email"]))["Subject"] == (
            f"Welcome to Herald, {again['username']}"
        )
        shown = await herald.http.get("/api/templates/signup/en", headers=herald.admin())
        assert shown.json()["source"] == "builtIn" and "{{ verify_url }}" in shown.json()["text"]
        missing = await herald.http.delete("/api/templates/signup/en", headers=herald.admin())
        assert missing.status_code == 404

    async def test_the_locale_chain_exact_then_language_then_default_then_builtin(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        kind = new_type()
        for locale, greeting in (("de-CH", "Grüezi"), ("de", "Hallo"), ("en", "Hello")):
            r = await put_template(herald, kind, locale, subject=f"{greeting} {{{{ username }}}}")
            assert r.status_code == 201, r.text
        swiss, _ = await subscriber(herald, "de-ch")  # any casing: canonical is de-CH
        austrian, _ = await subscriber(herald, "de_AT")
        french, _ = await subscriber(herald, "fr")
        nobody, _ = await subscriber(herald, None)
        member = await herald.member()  # a userId recipient: its locale comes with the lookup
        r = await herald.http.put(
            f"/api/subscribers/{member['userId']}", json={"locale": "de-CH"}, headers=herald.admin()
        )
        assert r.status_code == 200, r.text
        recipients = [{"subscriberId": s} for s in (swiss, austrian, french, nobody)]
        await trigger(herald, kind, [*recipients, {"userId": member["userId"]}])
        subjects = {}
        for sid in (swiss, austrian, french, nobody):
            subjects[sid] = (await received(smtp, f"{sid}@example.com"))["Subject"]
        # A subscriber without a username is greeted by address (as before templates).
        assert subjects == {
            swiss: f"Grüezi {swiss}@example.com",
            austrian: f"Hallo {austrian}@example.com",
            french: f"Hello {french}@example.com",
            nobody: f"Hello {nobody}@example.com",
        }
        assert (await received(smtp, member["email"], count=2))["Subject"] == (
            f"Grüezi {member['username']}"
        )

        # Without the default locale's template, the French one gets the built-in (generic).
        assert (
            await herald.http.delete(f"/api/templates/{kind}/en", headers=herald.admin())
        ).status_code == 200
        await trigger(herald, kind, [{"subscriberId": french}], title="Built-in title")
        assert (await received(smtp, f"{french}@example.com", count=2))["Subject"] == (
            "Built-in title"
        )

    async def test_html_escapes_a_trigger_message_and_the_text_keeps_it(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        kind = new_type()
        r = await put_template(
            herald,
            kind,
            "en",
            subject="{{ title }}",
            text="Said: {{ message }}\n",
            html="<div class=said>{{ message }}</div>",
        )
        assert r.status_code == 201, r.text
        _, address = await subscriber(herald, "en")
        script = "<script>alert('x')</script> & more"
        await trigger(
            herald,
            kind,
            [{"subscriberId": address.split("@")[0]}],
            message=script,
            title="Subject <b>stays</b> plain",
        )
        message = await received(smtp, address)
        assert message["Subject"] == "Subject <b>stays</b> plain"
        plain = part(message, "plain").replace("\r\n", "\n")
        # The text part is the template's, as written, then the unsubscribe footer.
        assert plain.startswith(f"Said: {script}\n\n--\nUnsubscribe from these emails: http")
        html = part(message, "html")
        assert (
            "<div class=said>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more</div>"
            in html
        )
        assert "<script>" not in html

    async def test_a_template_failing_on_a_real_emails_data_falls_back_to_the_builtin(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        """`data` answers any key at save time; a trigger without that key gets the built-in
        rather than no email."""
        kind = new_type()
        r = await put_template(herald, kind, "en", subject="Order {{ data.orderId }}")
        assert r.status_code == 201, r.text
        sid, address = await subscriber(herald, None)
        await trigger(herald, kind, [{"subscriberId": sid}], data={"orderId": "A-17"})
        assert (await received(smtp, address))["Subject"] == "Order A-17"
        await trigger(herald, kind, [{"subscriberId": sid}], title="No order id")
        assert (await received(smtp, address, count=2))["Subject"] == "No order id"


class TestChecks:
    async def test_a_syntax_error_is_422_naming_the_part_and_the_line(
        self, herald: RunningHerald
    ) -> None:
        kind = new_type()
        r = await put_template(herald, kind, "en", text="Hi {{ username }},\n\n{{ message }\n")
        [detail] = error_details(r)
        assert detail["field"] == "text" and detail["line"] == 3
        assert detail["message"].startswith("line 3: ")
        r = await put_template(herald, kind, "en", html="<p>\n{% if username %}open")
        [detail] = error_details(r)
        assert detail["field"] == "html" and detail["line"] == 2
        r = await put_template(herald, kind, "en", subject="Hi {{ nickname }}")
        [detail] = error_details(r)
        assert detail["field"] == "subject" and "'nickname' is undefined" in detail["message"]
        r = await put_template(herald, kind, "en", subject="Two\nlines")
        assert error_details(r)[0]["field"] == "subject"
        listed = await herald.http.get("/api/templates", headers=herald.admin())
        assert kind not in [t["type"] for t in listed.json()["types"]]  # nothing was stored

    async def test_the_sandbox_refuses_python_internals(self, herald: RunningHerald) -> None:
        kind = new_type()
        for html in (
            "{{ ''.__class__.__mro__ }}",
            "{{ username|attr('__class__') }}",
            "ok\n{{ data.x.__class__ }}",
        ):
            [detail] = error_details(await put_template(herald, kind, "en", html=html))
            assert detail["field"] == "html" and "unsafe" in detail["message"], detail
        # Nor may one render take minutes or gigabytes.
        for text in ("{{ 9**9**9**9**9 }}", "{{ 'x' * 10**8 }}"):
            [detail] = error_details(await put_template(herald, kind, "en", text=text))
            assert detail["field"] == "text" and "not allowed" in detail["message"], detail
        r = await herald.http.post(
            f"/api/templates/{kind}/en/preview",
            headers=herald.admin(),
            json={"text": "{{ message.__class__.__base__.__subclasses__() }}"},
        )
        [detail] = error_details(r)
        assert detail["field"] == "text" and "unsafe" in detail["message"]

    async def test_bad_type_or_locale_is_422_naming_it(self, herald: RunningHerald) -> None:
        for path, field in (
            ("/api/templates/Bad%20Type/en", "type"),
            ("/api/templates/ok/english", "locale"),
            ("/api/templates/ok/e1", "locale"),
            (f"/api/templates/{'x' * 33}/en", "type"),
        ):
            r = await herald.http.put(
                path, json={"subject": "s", "text": "t", "html": "h"}, headers=herald.admin()
            )
            assert [d["field"] for d in error_details(r)] == [field], path
        r = await herald.http.put(
            "/api/templates/ok/en", json={"subject": "s", "text": "t"}, headers=herald.admin()
        )
        assert [d["field"] for d in error_details(r)] == ["html"]

    async def test_only_the_admin_or_an_ops_key(self, herald: RunningHerald) -> None:
        assert (await herald.http.get("/api/templates")).status_code == 401
        key = await herald.http.post(
            "/api/ops/api-keys", json={"name": "t", "scopes": ["trigger"]}, headers=herald.admin()
        )
        r = await herald.http.get("/api/templates", headers=bearer(key.json()["key"]))
        assert r.status_code == 403
        ops = await herald.http.post(
            "/api/ops/api-keys", json={"name": "editor", "scopes": ["ops"]}, headers=herald.admin()
        )
        kind = new_type()
        r = await herald.http.put(
            f"/api/templates/{kind}/de",
            json={"subject": "s", "text": "t", "html": "h"},
            headers=bearer(ops.json()["key"]),
        )
        assert r.status_code == 201, r.text
        assert r.json()["updatedBy"] == f"key {ops.json()['id']} (editor)"


class TestReading:
    async def test_list_marks_the_builtins_and_the_stored_locales(
        self, herald: RunningHerald
    ) -> None:
        kind = new_type()
        assert (await put_template(herald, kind, "pt_br")).status_code == 201
        r = await herald.http.get("/api/templates", headers=herald.admin())
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["defaultLocale"] == "en"
        types = {t["type"]: t for t in body["types"]}
        for builtin in ("signup", "login", "reset_password", "purchase", "generic"):
            assert types[builtin]["builtIn"] is True
        assert "verify_url" in types["signup"]["variables"]
        assert types[kind]["builtIn"] is False
        assert [s["locale"] for s in types[kind]["locales"]] == ["pt-BR"]
        assert types[kind]["variables"] == ["username", "title", "message", "data"]
        got = await herald.http.get(f"/api/templates/{kind}/PT-br", headers=herald.admin())
        assert got.json()["source"] == "stored" and got.json()["locale"] == "pt-BR"

    async def test_preview_renders_sample_data_and_drafts(self, herald: RunningHerald) -> None:
        url = "/api/templates/purchase/en/preview"
        r = await herald.http.post(url, json={}, headers=herald.admin())
        assert r.status_code == 200, r.text
        sample = r.json()
        assert sample["subject"] == "Your receipt for order ORD-1A2B3C4D5E"
        assert sample["source"] == "builtIn" and sample["templateLocale"] is None
        assert "Total: 25.00 EUR" in sample["text"] and "<h1>Thank you, ada</h1>" in sample["html"]

        r = await herald.http.post(
            url, json={"data": {"username": "Grace <3"}}, headers=herald.admin()
        )
        assert "<h1>Thank you, Grace &lt;3</h1>" in r.json()["html"]
        assert r.json()["text"].startswith("Hi Grace <3,")

        draft = {"html": "<p>{{ total }} for {{ username }}</p>", "data": {"username": "Ada"}}
        r = await herald.http.post(url, json=draft, headers=herald.admin())
        assert r.json()["source"] == "draft" and "<p>25.00 for Ada</p>" in r.json()["html"]
        assert r.json()["subject"] == "Your receipt for order ORD-1A2B3C4D5E"  # the built-in's

        kind = new_type()
        r = await herald.http.post(
            f"/api/templates/{kind}/en/preview",
            headers=herald.admin(),
            json={"subject": "Post {{ data.postId }}", "text": "{{ message }}\n{{ oops }"},
        )
        [detail] = error_details(r)
        assert detail == {"field": "text", "line": 2, "message": detail["message"]}
        r = await herald.http.post(
            f"/api/templates/{kind}/en/preview",
            headers=herald.admin(),
            json={"subject": "Post {{ data.postId }}", "data": {"data": {"postId": 7}}},
        )
        assert r.json()["subject"] == "Post 7"

        # A stored one is what a recipient with that locale gets, and the preview says so.
        assert (
            await put_template(herald, kind, "de", subject="Hallo {{ username }}")
        ).status_code == 201
        r = await herald.http.post(
            f"/api/templates/{kind}/de-AT/preview", json={}, headers=herald.admin()
        )
        assert (r.json()["subject"], r.json()["source"]) == ("Hallo ada", "stored")
        assert r.json()["templateLocale"] == "de"


class TestAcrossServers:
    async def test_a_change_on_one_server_reaches_another_within_seconds(
        self, herald: RunningHerald, smtp: SmtpSink, stack: dict[str, Any]
    ) -> None:
        # A second API server on the same database and Redis (embedded: the same data folder).
        settings = make_settings(
            herald.settings.data_dir, email_host="127.0.0.1", email_port=smtp.port, **stack
        )
        second, server, task = await start_herald(settings)
        try:
            await self._change_reaches(herald, second, smtp)
        finally:
            await second.http.aclose()
            server.should_exit = True
            await asyncio.wait_for(task, 60)

    async def _change_reaches(
        self, first: RunningHerald, second: RunningHerald, smtp: SmtpSink
    ) -> None:
        kind = new_type()
        r = await put_template(first, kind, "en", subject="Stored {{ title }}")
        assert r.status_code == 201, r.text

        async def live() -> bool:
            return second.herald.templates.resolve(kind, None)[0].locale == "en"

        await eventually(live, timeout=3 * CHECK_SECONDS + 2)
        sid, address = await subscriber(second, None)
        await trigger(second, kind, [{"subscriberId": sid}])
        assert (await received(smtp, address))["Subject"] == "Stored Title"

        r = await first.http.delete(f"/api/templates/{kind}/en", headers=first.admin())
        assert r.status_code == 200, r.text

        async def gone() -> bool:
            return second.herald.templates.resolve(kind, None)[0].locale is None

        await eventually(gone, timeout=3 * CHECK_SECONDS + 2)


@pytest.mark.parametrize("locale", ["de-CH", "zh-Hant-TW"])
def test_locale_chain(locale: str) -> None:
    from herald.templates.locales import chain

    expected = {"de-CH": ("de-CH", "de", "en"), "zh-Hant-TW": ("zh-Hant-TW", "zh-Hant", "zh", "en")}
    assert chain(locale.lower().replace("-", "_"), "en") == expected[locale]
    assert chain(None, "en") == ("en",) and chain("not a locale!", "de") == ("de",)
