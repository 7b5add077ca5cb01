"""The dashboard's template editor in a real headless Chromium (as tests/web/test_pages.py
drives the pages): open a type and locale, preview with sample data, a save refused with
the line, a save that changes the email the SMTP server receives, and a delete."""

from __future__ import annotations

import uuid
from email import message_from_bytes, policy
from typing import Any

from playwright.async_api import expect

from tests.fixtures.herald import ADMIN_TOKEN, RunningHerald
from tests.fixtures.smtp import SmtpSink


async def test_edit_preview_refuse_save_and_delete_a_template(
    herald: RunningHerald,
    contexts: Any,
    smtp: SmtpSink,
) -> None:
    kind = f"t{uuid.uuid4().hex[:10]}"
    context = await contexts()
    await context.add_init_script(f"sessionStorage.setItem('herald.admin', '{ADMIN_TOKEN}');")
    tab = await context.new_page()
    await tab.goto(herald.url + "/dashboard")
    editor = tab.get_by_test_id("templates")
    # It opens on the first type, in the default locale.
    await expect(editor.get_by_test_id("template-status")).to_contain_text("signup / en")
    await expect(editor.get_by_label("Subject")).to_have_value("Welcome to Herald, {{ username }}")

    # A type nothing is stored for opens on the built-in it falls back to.
    await editor.get_by_label("Type").fill(kind)
    await editor.get_by_label("Locale").fill("de")
    await editor.get_by_role("button", name="Open").click()
    await expect(editor.get_by_test_id("template-status")).to_contain_text("Built-in")
    await expect(editor.get_by_label("Subject")).to_have_value("{{ title }}")

    await editor.get_by_label("Subject").fill("Hallo {{ username }}: {{ title }}")
    await editor.get_by_label("Plain text").fill("{{ message }}\n")
    await editor.get_by_label("HTML body").fill("<p class=msg>{{ message }}</p>")
    await editor.get_by_label("Sample data").fill('{"username": "Grete", "message": "<b>hi</b>"}')
    await editor.get_by_role("button", name="Preview").click()
    preview = editor.get_by_test_id("template-preview")
    await expect(preview).to_contain_text("Hallo Grete: Your order shipped")
    frame = tab.frame_locator("#tpl-preview-html")
    await expect(frame.locator("p.msg")).to_have_text("<b>hi</b>")  # escaped: shown, not bold

    # A syntax error: refused, with the part and the line.
    await editor.get_by_label("Plain text").fill("Hi,\n\n{{ message }\n")
    await editor.get_by_role("button", name="Save").click()
    await expect(editor.get_by_test_id("template-error")).to_contain_text("text (line 3)")
    stored = await herald.http.get(f"/api/templates/{kind}/de", headers=herald.admin())
    assert stored.json()["source"] == "builtIn"

    await editor.get_by_label("Plain text").fill("Hi,\n\n{{ message }}\n")
    await editor.get_by_role("button", name="Save").click()
    await expect(editor.get_by_test_id("template-status")).to_contain_text("Stored")
    await expect(editor.get_by_test_id("template-error")).to_have_text("")
    await expect(editor.get_by_test_id("template-locales")).to_contain_text("de")
    stored = await herald.http.get(f"/api/templates/{kind}/de", headers=herald.admin())
    assert stored.json()["subject"] == "Hallo {{ username }}: {{ title }}"

    # A German subscriber's email now comes from it.
    sid = f"sub-{uuid.uuid4().hex[:8]}"
    await herald.http.put(
        f"/api/subscribers/{sid}",
        json={"email": f"{sid}@example.com", "locale": "de-DE"},
        headers=herald.admin(),
    )
    r = await herald.http.post(
        "/api/notifications",
        headers=herald.admin(),
        json={
            "recipients": [{"subscriberId": sid}],
            "type": kind,
            "title": "Neu",
            "message": "Eine Nachricht",
            "channels": ["email"],
        },
    )
    assert r.status_code == 201, r.text
    [envelope] = await smtp.wait_for(f"{sid}@example.com")
    message = message_from_bytes(envelope.original_content, policy=policy.default)
    assert message["Subject"] == f"Hallo {sid}@example.com: Neu"

    await editor.get_by_role("button", name="Delete").click()
    await expect(editor.get_by_test_id("template-status")).to_contain_text("Built-in")
    await expect(editor.get_by_label("Subject")).to_have_value("{{ title }}")
    stored = await herald.http.get(f"/api/templates/{kind}/de", headers=herald.admin())
    assert stored.json()["source"] == "builtIn"
