"""herald.preferences.rules: which switch decides whether a type goes out on a channel."""

from __future__ import annotations

from herald.preferences.rules import Blocked, Switches, address_blocked, blocked


def test_no_switches_means_everything_goes_out() -> None:
    assert blocked(None, "promo", "email") is None
    assert blocked({}, "promo", "email") is None


def test_a_channel_switched_off() -> None:
    assert blocked({("*", "email"): False}, "promo", "email") == Blocked(
        "preferences: email off", "channel"
    )
    assert blocked({("*", "email"): False}, "promo", "inapp") is None


def test_a_type_switched_off_on_every_channel() -> None:
    switches: Switches = {("promo", "*"): False}
    assert blocked(switches, "promo", "inapp") == Blocked("preferences: type promo off", "type")
    assert blocked(switches, "digest", "inapp") is None


def test_the_type_on_this_channel_beats_the_type_and_the_channel() -> None:
    off_here = {("promo", "email"): False, ("promo", "*"): True, ("*", "email"): True}
    assert blocked(off_here, "promo", "email") == Blocked(
        "preferences: email off for type promo", "type_channel"
    )
    on_here = {("promo", "email"): True, ("promo", "*"): False, ("*", "email"): False}
    assert blocked(on_here, "promo", "email") is None


def test_the_type_beats_the_channel() -> None:
    assert blocked({("promo", "*"): True, ("*", "email"): False}, "promo", "email") is None
    assert blocked({("promo", "*"): False, ("*", "email"): True}, "promo", "email") == Blocked(
        "preferences: type promo off", "type"
    )


def test_switches_of_other_types_and_channels_do_not_apply() -> None:
    others = {("news", "email"): False, ("news", "*"): False, ("*", "inapp"): False}
    assert blocked(others, "promo", "email") is None


def test_an_unsubscribed_address() -> None:
    assert address_blocked("promo") == Blocked(
        "preferences: address unsubscribed from type promo", "address"
    )
