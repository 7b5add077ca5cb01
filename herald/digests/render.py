"""The digest email's subject and bodies, in one function so it can move to the stored
templates later.

Rendered with `string.Template` inside the page layout of herald.templates.rendering (not yet
a stored, editable template): the list of items is HTML built here from values escaped one by
one. Each body is one substitution pass, so text inside an item that looks like a placeholder
stays as written.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from string import Template

from herald.templates.rendering import LAYOUT_HEAD, LAYOUT_TAIL


@dataclass(frozen=True)
class Item:
    title: str
    message: str


_SUBJECT = Template("$count new $kind notifications")
_TEXT = Template("Hi $username,\n\nHere is what happened:\n\n$items")
_HTML = Template(
    "<h1>$count new $kind notifications</h1><p>Hi $username, here is what happened:</p>"
    "<ul>$items</ul>"
)
_TEXT_ITEM = Template("- $title\n  $message\n")
_HTML_ITEM = Template("<li><strong>$title</strong><br>$message</li>")


def render_digest(kind: str, username: str, items: list[Item]) -> tuple[str, str, str]:
    """Subject, plain text and HTML of one digest carrying `items` (oldest first)."""
    plain = {"count": str(len(items)), "kind": kind, "username": username}
    escaped = {k: html.escape(v) for k, v in plain.items()}
    text_items = "\n".join(_TEXT_ITEM.substitute(title=i.title, message=i.message) for i in items)
    html_items = "".join(
        _HTML_ITEM.substitute(title=html.escape(i.title), message=html.escape(i.message))
        for i in items
    )
    return (
        _SUBJECT.substitute(plain),
        _TEXT.substitute(plain, items=text_items),
        LAYOUT_HEAD + _HTML.substitute(escaped, items=html_items) + LAYOUT_TAIL,
    )
