"""herald.notifications.models: which statuses a job may still send, and which an inbox hides."""

from __future__ import annotations

from herald.core.db import table
from herald.notifications.models import (
    FINAL_STATUSES,
    HIDDEN_STATUSES,
    MODEL_OF,
    Channel,
    DeliveryAttempt,
    EmailNotification,
    Status,
)


def test_a_row_on_its_way_is_not_final() -> None:
    assert not {Status.PENDING, Status.QUEUED, Status.SENDING} & FINAL_STATUSES


def test_a_dead_letter_is_not_final_so_a_person_can_replay_it() -> None:
    assert Status.FAILED not in FINAL_STATUSES


def test_no_job_sends_a_delivered_held_or_digested_row() -> None:
    assert {Status.DELIVERED, Status.HELD, Status.DIGESTED} <= FINAL_STATUSES


def test_every_hidden_status_is_final() -> None:
    # An inbox must not hide a row that a job may still deliver to the recipient.
    assert set(HIDDEN_STATUSES) <= FINAL_STATUSES
    assert set(HIDDEN_STATUSES) == {Status.EXPIRED, Status.NOT_SENT, Status.SKIPPED}
    assert Status.DELIVERED not in HIDDEN_STATUSES


def test_each_channel_has_its_own_model() -> None:
    assert set(MODEL_OF) == set(Channel)
    assert all(model.channel is channel for channel, model in MODEL_OF.items())
    assert len({table(model).name for model in MODEL_OF.values()}) == len(MODEL_OF)


def test_an_audit_row_is_numbered_as_the_rows_current_attempt() -> None:
    n = EmailNotification(id=9, attempts=4)
    row = DeliveryAttempt.of(n, Status.FAILED, "retry-1", error="451 try later")
    assert (row.channel, row.notification_id, row.attempt) == ("email", 9, 4)
    assert (row.status, row.queue_name, row.error) == ("failed", "retry-1", "451 try later")
