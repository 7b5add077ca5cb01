"""The templates Herald ships: what every type renders with until an operator stores one of
its own (and again once they delete it). Jinja2 syntax; the HTML part is autoescaped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Body:
    """The three parts of an email. `html` is the body only: Herald's layout wraps it."""

    subject: str
    text: str
    html: str


GENERIC = "generic"  # the family of every type without a built-in of its own

BUILT_IN: dict[str, Body] = {
    "signup": Body(
        subject="Welcome to Herald, {{ username }}",
        text=(
            "Hi {{ username }},\n\nWelcome aboard. Confirm your email address with this link:\n"
            "{{ verify_url }}\n\nThe link works for 48 hours.\n"
        ),
        html=(
            "<h1>Welcome, {{ username }}</h1><p>Confirm your email address:</p>"
            '<p><a href="{{ verify_url }}">Verify my email</a></p>'
            "<p>The link works for 48 hours.</p>"
        ),
    ),
    "login": Body(
        subject="New sign-in to your account",
        text=(
            "Hi {{ username }},\n\nYour account was signed in to at {{ time }} from "
            "{{ ip_address }} ({{ user_agent }}).\nIf this was not you, reset your password now.\n"
        ),
        html=(
            "<h1>New sign-in</h1><p>Hi {{ username }}, your account was signed in to at "
            "<strong>{{ time }}</strong> from <strong>{{ ip_address }}</strong> "
            "({{ user_agent }}).</p><p>If this was not you, reset your password now.</p>"
        ),
    ),
    "reset_password": Body(
        subject="Reset your Herald password",
        text=(
            "Hi {{ username }},\n\nSomeone (we hope you) asked to reset your password. Choose a "
            "new one with this link:\n{{ reset_url }}\n\nThe link works once, for {{ minutes }} "
            "minutes. If you did not ask, ignore this email: your password stays as it is.\n"
        ),
        html=(
            "<h1>Reset your password</h1><p>Hi {{ username }}, someone (we hope you) asked to "
            'reset your password.</p><p><a href="{{ reset_url }}">Choose a new password</a></p>'
            "<p>The link works once, for {{ minutes }} minutes. If you did not ask, ignore this "
            "email: your password stays as it is.</p>"
        ),
    ),
    "purchase": Body(
        subject="Your receipt for order {{ order_reference }}",
        text=(
            "Hi {{ username }},\n\nThank you for your purchase.\n\nOrder {{ order_reference }}\n"
            "{{ items }}\n\nTotal: {{ total }} {{ currency }}\n"
        ),
        html=(
            "<h1>Thank you, {{ username }}</h1><p>Your receipt for order "
            "<strong>{{ order_reference }}</strong>:</p><pre>{{ items }}</pre>"
            "<p><strong>Total: {{ total }} {{ currency }}</strong></p>"
        ),
    ),
    # The generic trigger's types; a type without a built-in of its own uses "generic".
    GENERIC: Body(
        subject="{{ title }}",
        text="Hi {{ username }},\n\n{{ message }}\n",
        html="<h1>{{ title }}</h1><p>Hi {{ username }},</p><p>{{ message }}</p>",
    ),
    "announcement": Body(
        subject="Announcement: {{ title }}",
        text="Hi {{ username }},\n\nAnnouncement: {{ title }}\n\n{{ message }}\n",
        html="<p>Announcement</p><h1>{{ title }}</h1><p>Hi {{ username }},</p><p>{{ message }}</p>",
    ),
    "security_alert": Body(
        subject="Security alert: {{ title }}",
        text=(
            "Hi {{ username }},\n\nSecurity alert: {{ title }}\n\n{{ message }}\n\nIf this was "
            "not you, reset your password now.\n"
        ),
        html=(
            '<h1 style="color:#b42318">Security alert: {{ title }}</h1><p>Hi {{ username }},</p>'
            "<p>{{ message }}</p><p>If this was not you, reset your password now.</p>"
        ),
    ),
    "reminder": Body(
        subject="Reminder: {{ title }}",
        text="Hi {{ username }},\n\nA reminder: {{ title }}\n\n{{ message }}\n",
        html="<h1>Reminder: {{ title }}</h1><p>Hi {{ username }},</p><p>{{ message }}</p>",
    ),
}

# Types whose emails only their own flows send (signup, login, ...): each has variables of its
# own. The generic trigger never renders them, whatever type it is given.
DOMAIN_TYPES = frozenset({"signup", "login", "reset_password", "purchase"})


class AnyData(dict[str, Any]):
    """A trigger's `data` in sample renders: every key holds a placeholder, so a template
    using `{{ data.postId }}` can be checked and previewed without a real trigger."""

    def __missing__(self, key: str) -> Placeholder:
        return Placeholder(f"[data.{key}]")


class Placeholder(str):
    """A sample value that also answers any further attribute or item (`data.a.b`)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Placeholder:
        if name.startswith("_"):
            raise AttributeError(name)
        return Placeholder(f"{self[:-1]}.{name}]")


# What each type's emails are given, with sample values (for previews and the save check).
_TRIGGER_SAMPLE: dict[str, Any] = {
    "username": "ada",
    "title": "Your order shipped",
    "message": "It is on its way: parcel 1Z999 arrives on Friday.",
    "data": AnyData(),
}
_SAMPLES: dict[str, dict[str, Any]] = {
    "signup": {"username": "ada", "verify_url": "https://app.example.com/verify/3b1f9c"},
    "login": {
        "username": "ada",
        "time": "2026-01-05 09:30 UTC",
        "ip_address": "203.0.113.7",
        "user_agent": "Firefox on Linux",
    },
    "reset_password": {
        "username": "ada",
        "reset_url": "https://app.example.com/reset-password/7c2e",
        "minutes": 60,
    },
    "purchase": {
        "username": "ada",
        "order_reference": "ORD-1A2B3C4D5E",
        "items": "2 x Notebook @ 12.50 EUR",
        "total": "25.00",
        "currency": "EUR",
    },
}


def sample(kind: str) -> dict[str, Any]:
    """Sample variables for `kind`'s emails: its flow's own, or the generic trigger's."""
    found = _SAMPLES.get(kind, _TRIGGER_SAMPLE)
    return {**found, "data": AnyData()} if found is _TRIGGER_SAMPLE else dict(found)


def variables(kind: str) -> list[str]:
    """The variable names `kind`'s emails are given."""
    return list(_SAMPLES.get(kind, _TRIGGER_SAMPLE))


def family(kind: str) -> str:
    """The built-in a type falls back to: its own, or the generic one."""
    return kind if kind in BUILT_IN else GENERIC
