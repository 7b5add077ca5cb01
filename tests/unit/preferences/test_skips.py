"""herald.preferences.skips: what a notification the preferences turned off looks like."""

from __future__ import annotations

from herald.notifications.models import EmailNotification, Status
from herald.preferences.rules import Blocked
from herald.preferences.skips import is_skipped, mark


def test_a_skipped_notification_is_kept_with_the_switch_that_decided_and_no_queue() -> None:
    n = EmailNotification(id=1, status=Status.QUEUED, queue_name="main")
    assert not is_skipped(n)
    mark(n, Blocked("preferences: email off for type promo", "type_channel"))
    assert is_skipped(n)
    assert (n.status, n.queue_name) == (Status.SKIPPED, None)
    assert n.failure_reason == "preferences: email off for type promo"
