"""herald.delivery.processor: where a failed attempt sends a notification, and what it records.

The tiers are made here, not read from the ladder: these tests are about the decision, whatever
the ladder's shape (tests/unit/notifications/test_ladder.py and the end-to-end tests cover that)."""

from __future__ import annotations

from herald.delivery.errors import DeliveryError, PermanentDeliveryError
from herald.delivery.processor import after_failure, failure_reason
from herald.notifications.ladder import Tier

MAIN = Tier(0, "main", attempts=3, delay_ms=0, concurrency=1)
RETRY = Tier(1, "retry", attempts=2, delay_ms=60_000, concurrency=1)
ONCE = Tier(2, "once", attempts=1, delay_ms=60_000, concurrency=1)
DEAD = Tier(3, "dead", attempts=0, delay_ms=0, concurrency=1)
TIERS = (MAIN, RETRY, ONCE, DEAD)


def test_a_transient_failure_with_attempts_left_stays_in_its_tier() -> None:
    # None: the processor raises, and BullMQ retries the job in its tier with backoff.
    assert after_failure(DeliveryError("SMTP 451 try later"), TIERS, MAIN, 0) is None
    assert after_failure(DeliveryError("SMTP 451 try later"), TIERS, MAIN, 1) is None
    assert after_failure(DeliveryError("SMTP 451 try later"), TIERS, RETRY, 0) is None


def test_a_transient_failure_on_the_tiers_last_attempt_moves_to_the_next_tier() -> None:
    assert after_failure(DeliveryError("SMTP 451 try later"), TIERS, MAIN, 2) is RETRY
    assert after_failure(DeliveryError("SMTP 451 try later"), TIERS, RETRY, 1) is ONCE


def test_an_unexpected_error_is_transient_too() -> None:
    assert after_failure(RuntimeError("a bug"), TIERS, MAIN, 1) is None
    assert after_failure(RuntimeError("a bug"), TIERS, MAIN, 2) is RETRY


def test_using_up_the_last_retry_tier_dead_letters() -> None:
    assert after_failure(DeliveryError("down"), TIERS, ONCE, attempts_made=0) is DEAD


def test_a_job_that_ran_more_often_than_its_tier_allows_still_moves_on() -> None:
    # e.g. a stalled job run again, or the tier's attempts lowered meanwhile
    assert after_failure(DeliveryError("down"), TIERS, MAIN, attempts_made=7) is RETRY


def test_a_permanent_failure_goes_to_the_dead_letter_queue_at_once() -> None:
    for tier in (MAIN, RETRY, ONCE):
        to = after_failure(PermanentDeliveryError("550 no such user"), TIERS, tier, 0)
        assert to is DEAD, tier
    assert DEAD.is_dead_letter


def test_a_channels_reason_is_recorded_as_it_said_it() -> None:
    assert failure_reason(DeliveryError("SMTP 451 try later")) == "SMTP 451 try later"
    assert failure_reason(PermanentDeliveryError("HTTP 410 Gone")) == "HTTP 410 Gone"


def test_any_other_error_is_recorded_with_its_type() -> None:
    assert failure_reason(RuntimeError("boom")) == "RuntimeError: boom"
    assert failure_reason(KeyError("recipient")) == "KeyError: 'recipient'"
