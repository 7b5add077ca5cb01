"""What rendering one email costs: `python scripts/template_render_cost.py`.

Times, in process (`timeit`, best of 5 rounds, CPU-bound so wall time is CPU time on an idle
core), the work `new_email` does per email to pick and render its body:

- before: the `string.Template` bodies Herald had until templates became editable (the
  generic trigger's `announcement`, copied here as `herald/notifications/templates.py` had it:
  values `html.escape`d for the HTML part, the layout substituted around it);
- after: `TemplateStore.render` (herald.templates.store) for the same email, from the
  built-in and from a stored template reached through a locale chain (`de-CH` -> `de`).

Timings are printed, never asserted.
"""

from __future__ import annotations

import html
import timeit
from datetime import UTC, datetime
from string import Template
from typing import Any

from herald.core.config import Settings
from herald.templates.builtin import Body
from herald.templates.rendering import compile_body
from herald.templates.store import Entry, TemplateStore

NUMBER = 20_000
ROUNDS = 5
CONTEXT = {"username": "ada", "title": "Maintenance <tonight>", "message": "Down 10 min & back."}

_LAYOUT = Template(
    '<!doctype html><html><body style="font-family:system-ui,sans-serif;color:#1f2933;'
    'max-width:560px;margin:auto;padding:24px">$body'
    '<p style="color:#7b8794;font-size:12px">Sent by Herald.</p></body></html>'
)
_BEFORE = (
    "Announcement: $title",
    "Hi $username,\n\nAnnouncement: $title\n\n$message\n",
    "<p>Announcement</p><h1>$title</h1><p>Hi $username,</p><p>$message</p>",
)


def before(context: dict[str, Any]) -> tuple[str, str, str]:
    plain = {k: str(v) for k, v in context.items()}
    escaped = {k: html.escape(v) for k, v in plain.items()}
    subject, text, body = (Template(t) for t in _BEFORE)
    return (
        subject.safe_substitute(plain),
        text.safe_substitute(plain),
        _LAYOUT.substitute(body=body.safe_substitute(escaped)),
    )


def store() -> TemplateStore:
    """A store holding one stored template, as a reload leaves it (no database needed)."""
    made = TemplateStore(Settings(), None, None)  # type: ignore[arg-type]
    compiled = compile_body(
        Body(
            "Neu: {{ title }}",
            "Hallo {{ username }},\n\n{{ message }}\n",
            "<h1>{{ title }}</h1><p>Hallo {{ username }},</p><p>{{ message }}</p>",
        )
    )
    made._entries = {
        ("announcement", "de"): Entry("announcement", "de", datetime.now(UTC), compiled)
    }
    made._types = frozenset({"announcement"})
    return made


def per_email(call: Any) -> float:
    return min(timeit.repeat(call, number=NUMBER, repeat=ROUNDS)) / NUMBER * 1e6


def main() -> None:
    templates = store()
    rows = [
        ("before: string.Template (announcement)", lambda: before(CONTEXT)),
        (
            "after: Jinja2 sandbox, built-in",
            lambda: templates.render("announcement", "fr", CONTEXT),
        ),
        (
            "after: Jinja2 sandbox, stored de for de-CH",
            lambda: templates.render("announcement", "de-CH", CONTEXT),
        ),
    ]
    for label, call in rows:
        print(f"{label:48s} {per_email(call):6.1f} µs per email")


if __name__ == "__main__":
    main()
