"""Email bodies per notification type, HTML and plain text.

Values are escaped for the HTML part; the plain-text part takes them as they are.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from string import Template
from typing import Any


@dataclass(frozen=True)
class EmailTemplate:
    subject: str
    text: str
    html: str

    def render(self, context: dict[str, Any]) -> tuple[str, str, str]:
        plain = {k: str(v) for k, v in context.items()}
        escaped = {k: html.escape(v) for k, v in plain.items()}
        return (
            Template(self.subject).safe_substitute(plain),
            Template(self.text).safe_substitute(plain),
            _LAYOUT.substitute(body=Template(self.html).safe_substitute(escaped)),
        )


_LAYOUT = Template(
    '<!doctype html><html><body style="font-family:system-ui,sans-serif;color:#1f2933;'
    'max-width:560px;margin:auto;padding:24px">$body'
    '<p style="color:#7b8794;font-size:12px">Sent by Herald.</p></body></html>'
)

TEMPLATES: dict[str, EmailTemplate] = {
    "signup": EmailTemplate(
        subject="Welcome to Herald, $username",
        text=(
            "Hi $username,\n\nWelcome aboard. Confirm your email address with this link:\n"
            "$verify_url\n\nThe link works for 48 hours.\n"
        ),
        html=(
            "<h1>Welcome, $username</h1><p>Confirm your email address:</p>"
            '<p><a href="$verify_url">Verify my email</a></p>'
            "<p>The link works for 48 hours.</p>"
        ),
    ),
    "login": EmailTemplate(
        subject="New sign-in to your account",
        text=(
            "Hi $username,\n\nYour account was signed in to at $time from $ip_address "
            "($user_agent).\nIf this was not you, reset your password now.\n"
        ),
        html=(
            "<h1>New sign-in</h1><p>Hi $username, your account was signed in to at "
            "<strong>$time</strong> from <strong>$ip_address</strong> ($user_agent).</p>"
            "<p>If this was not you, reset your password now.</p>"
        ),
    ),
}


TEMPLATES.update(
    {
        "reset_password": EmailTemplate(
            subject="Reset your Herald password",
            text=(
                "Hi $username,\n\nSomeone (we hope you) asked to reset your password. Choose a "
                "new one with this link:\n$reset_url\n\nThe link works once, for $minutes "
                "minutes. If you did not ask, ignore this email: your password stays as it is.\n"
            ),
            html=(
                "<h1>Reset your password</h1><p>Hi $username, someone (we hope you) asked to "
                'reset your password.</p><p><a href="$reset_url">Choose a new password</a></p>'
                "<p>The link works once, for $minutes minutes. If you did not ask, ignore this "
                "email: your password stays as it is.</p>"
            ),
        ),
        "purchase": EmailTemplate(
            subject="Your receipt for order $order_reference",
            text=(
                "Hi $username,\n\nThank you for your purchase.\n\nOrder $order_reference\n"
                "$items\n\nTotal: $total $currency\n"
            ),
            html=(
                "<h1>Thank you, $username</h1><p>Your receipt for order "
                "<strong>$order_reference</strong>:</p><pre>$items</pre>"
                "<p><strong>Total: $total $currency</strong></p>"
            ),
        ),
        # The generic trigger's types; any type without its own template uses "generic".
        "generic": EmailTemplate(
            subject="$title",
            text="Hi $username,\n\n$message\n",
            html="<h1>$title</h1><p>Hi $username,</p><p>$message</p>",
        ),
        "announcement": EmailTemplate(
            subject="Announcement: $title",
            text="Hi $username,\n\nAnnouncement: $title\n\n$message\n",
            html="<p>Announcement</p><h1>$title</h1><p>Hi $username,</p><p>$message</p>",
        ),
        "security_alert": EmailTemplate(
            subject="Security alert: $title",
            text=(
                "Hi $username,\n\nSecurity alert: $title\n\n$message\n\nIf this was not "
                "you, reset your password now.\n"
            ),
            html=(
                '<h1 style="color:#b42318">Security alert: $title</h1><p>Hi $username,</p>'
                "<p>$message</p><p>If this was not you, reset your password now.</p>"
            ),
        ),
        "reminder": EmailTemplate(
            subject="Reminder: $title",
            text="Hi $username,\n\nA reminder: $title\n\n$message\n",
            html="<h1>Reminder: $title</h1><p>Hi $username,</p><p>$message</p>",
        ),
    }
)


def template_for(kind: str) -> EmailTemplate:
    """The template of this notification type, or the generic one."""
    return TEMPLATES.get(kind, TEMPLATES["generic"])


def render(kind: str, context: dict[str, Any]) -> tuple[str, str, str]:
    return template_for(kind).render(context)
