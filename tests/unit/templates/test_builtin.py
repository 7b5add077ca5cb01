"""herald.templates.builtin: the shipped templates, which one a type falls back to, and the
sample variables that saves and previews render with."""

from __future__ import annotations

import pytest

from herald.templates.builtin import BUILT_IN, DOMAIN_TYPES, GENERIC, family, sample, variables
from herald.templates.rendering import checked


def test_every_built_in_passes_the_check_a_save_must_pass() -> None:
    for kind, body in BUILT_IN.items():
        checked(kind, body)  # raises TemplateProblem, naming the part, otherwise


def test_a_type_without_a_built_in_falls_back_to_the_generic_one() -> None:
    assert family("purchase") == "purchase"
    assert family("comment_reply") == GENERIC
    assert all(kind in BUILT_IN for kind in DOMAIN_TYPES)


def test_domain_flows_get_their_own_variables_and_trigger_types_the_generic_ones() -> None:
    assert variables("reset_password") == ["username", "reset_url", "minutes"]
    assert variables("comment_reply") == ["username", "title", "message", "data"]


def test_sample_data_answers_any_key_and_attribute_but_no_private_one() -> None:
    data = sample("comment_reply")["data"]
    assert data["postId"] == "[data.postId]"
    assert data["post"].author.name == "[data.post.author.name]"
    with pytest.raises(AttributeError):
        data["post"]._secret  # noqa: B018


def test_samples_are_fresh_copies() -> None:
    first = sample("purchase")
    first["total"] = "0.00"
    assert sample("purchase")["total"] == "25.00"
    assert sample("promo")["data"] is not sample("promo")["data"]
