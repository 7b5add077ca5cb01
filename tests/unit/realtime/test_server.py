"""herald.realtime.server: parsing the ids a socket event names, and which origins may connect."""

from __future__ import annotations

from typing import Any

import pytest

from herald.realtime.server import MAX_ID, MAX_IDS, accepted_origin, parse_ids


def refused(data: Any) -> bool:
    try:
        parse_ids(data)
    except ValueError as error:
        return str(error).startswith("give an id")
    return False


def test_ids_in_every_accepted_shape() -> None:
    assert parse_ids(5) == [5]
    assert parse_ids([5, 6, 5]) == [5, 6, 5]
    assert parse_ids({"id": 5}) == [5]
    assert parse_ids({"ids": [5, 6]}) == [5, 6]
    assert parse_ids({"ids": 7, "id": 8}) == [7]  # ids wins
    assert parse_ids(MAX_ID) == [MAX_ID]


def test_all_means_every_notification() -> None:
    assert parse_ids("all") is None
    assert parse_ids({"all": True}) is None
    assert all(refused(d) for d in ({"all": 1}, {"all": "true"}, "ALL"))


def test_ids_outside_a_database_integer_are_refused() -> None:
    values: tuple[Any, ...] = (0, -1, MAX_ID + 1, [1, MAX_ID + 1])
    assert [d for d in values if not refused(d)] == []


def test_anything_but_integers_is_refused_even_one_among_them() -> None:
    values: tuple[Any, ...] = (True, [1, True], "5", 5.0, [1, "x"])
    assert [d for d in values if not refused(d)] == []


def test_an_empty_selection_is_refused() -> None:
    values: tuple[Any, ...] = ([], {}, None, {"ids": []})
    assert [d for d in values if not refused(d)] == []


def test_at_most_max_ids_at_once() -> None:
    assert len(parse_ids(list(range(1, MAX_IDS + 1))) or []) == MAX_IDS
    with pytest.raises(ValueError, match=f"at most {MAX_IDS} ids"):
        parse_ids(list(range(1, MAX_IDS + 2)))


accepted = accepted_origin(["http://localhost:3000"])


def test_a_configured_origin_is_accepted() -> None:
    assert accepted("http://localhost:3000", {})
    assert not accepted("http://localhost:3001", {"HTTP_HOST": "herald.example"})
    assert not accepted(None, {})


def test_herald_own_pages_connect_from_the_host_they_were_served_from() -> None:
    environ = {"HTTP_HOST": "herald.example:8000", "wsgi.url_scheme": "http"}
    assert accepted("http://herald.example:8000", environ)
    assert not accepted("https://herald.example:8000", environ)  # another scheme
    assert not accepted("http://evil.example", environ)
    assert not accepted(None, environ)


def test_behind_a_load_balancer_the_forwarded_host_and_scheme_count() -> None:
    environ = {
        "HTTP_HOST": "10.0.0.5:5001",
        "HTTP_X_FORWARDED_HOST": "herald.example, proxy.internal",
        "HTTP_X_FORWARDED_PROTO": "https, http",
    }
    assert accepted("https://herald.example", environ)
    assert not accepted("http://10.0.0.5:5001", environ)
    assert not accepted("https://proxy.internal", environ)
