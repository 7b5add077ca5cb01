"""herald.core.pagination: a page's offset and the page count every list answers with."""

from __future__ import annotations

from herald.core.pagination import PageParams, page_of


def test_the_offset_of_a_page() -> None:
    assert PageParams(page=1, limit=20).offset == 0
    assert PageParams(page=3, limit=20).offset == 40


def test_the_page_count_rounds_up_and_is_zero_for_an_empty_list() -> None:
    assert page_of(["a"], PageParams(page=3, limit=20), total=41).pages == 3
    assert page_of([], PageParams(page=1, limit=20), total=40).pages == 2
    empty = page_of(list[str](), PageParams(page=1, limit=20), total=0)
    assert (empty.items, empty.total, empty.pages) == ([], 0, 0)


def test_a_page_answers_with_its_items_params_total_and_page_count() -> None:
    page = page_of((1, 2), PageParams(page=2, limit=2), total=5)
    assert page.model_dump(by_alias=True) == {
        "items": [1, 2],
        "page": 2,
        "limit": 2,
        "total": 5,
        "pages": 3,
    }
