"""herald.templates.rendering: rendering a template's three parts in Jinja2's sandbox, without a
database (the store only chooses which compiled template renders)."""

from __future__ import annotations

import pytest

from herald.templates.builtin import BUILT_IN, Body
from herald.templates.rendering import (
    LAYOUT_HEAD,
    LAYOUT_TAIL,
    TemplateProblem,
    checked,
    compile_body,
)


def render(body: Body, **context: object) -> tuple[str, str, str]:
    return compile_body(body).render(context)


def test_a_built_in_renders_its_variables_in_every_part() -> None:
    subject, text, html = render(
        BUILT_IN["signup"], username="ada", verify_url="https://app.example/v/1"
    )
    assert subject == "Welcome to Herald, ada"
    assert "https://app.example/v/1" in text
    assert '<a href="https://app.example/v/1">' in html


def test_the_html_part_is_escaped_and_wrapped_in_the_layout_the_others_are_not() -> None:
    value = '<script>alert("x")</script> & co'
    subject, text, html = render(Body("{{ v }}", "{{ v }}", "<p>{{ v }}</p>"), v=value)
    assert subject == value and text == value
    assert html == (
        LAYOUT_HEAD
        + "<p>&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; co</p>"
        + LAYOUT_TAIL
    )


def test_the_subject_is_one_line_whatever_a_variable_holds() -> None:
    subject, _, _ = render(Body("Re: {{ v }}", "", ""), v="a\r\nBcc: eve@example.com\u2028b")
    assert subject == "Re: a Bcc: eve@example.com b"


def test_a_missing_variable_is_an_error_naming_the_part_and_line() -> None:
    with pytest.raises(TemplateProblem) as raised:
        render(BUILT_IN["signup"], username="ada")  # no verify_url
    problem = raised.value
    assert (problem.field, problem.line) == ("text", 4)
    assert problem.reason == "'verify_url' is undefined"


def test_default_makes_a_variable_optional() -> None:
    body = Body('{{ data.x | default("none") }}', "{% if data.y is defined %}y{% endif %}", "")
    subject, text, _ = render(body, data={})
    assert (subject, text) == ("none", "")


def test_a_syntax_error_names_the_part_and_line() -> None:
    with pytest.raises(TemplateProblem) as raised:
        compile_body(Body("ok", "line 1\nline 2\n{% if %}", "ok"))
    assert (raised.value.field, raised.value.line) == ("text", 3)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("{{ ''.__class__.__mro__ }}", "unsafe"),
        ("{{ 2 ** 5000 }}", "powers beyond 4096 bits"),
        ("{{ 'a' * 200000 }}", "results longer than 100000"),
        ("{{ [0] * 100001 }}", "results longer than 100000"),
    ],
)
def test_the_sandbox_refuses_internals_and_huge_results(expression: str, reason: str) -> None:
    with pytest.raises(TemplateProblem) as raised:
        render(Body("s", "t", "x\n" + expression))
    assert raised.value.field == "html" and raised.value.line == 2
    assert raised.value.reason.startswith("not allowed:") and reason in raised.value.reason


def test_small_products_and_powers_still_work() -> None:
    _, text, _ = render(Body("s", "{{ 'ab' * 3 }} {{ 2 ** 10 }}", ""))
    assert text == "ababab 1024"


def test_an_error_while_rendering_is_the_templates_problem() -> None:
    with pytest.raises(TemplateProblem, match=r"^subject: line 1: ZeroDivisionError"):
        render(Body("{{ 1 / 0 }}", "", ""))


def test_a_saved_template_must_have_a_one_line_subject() -> None:
    with pytest.raises(TemplateProblem, match="^subject: must be one line$"):
        checked("promo", Body("a\nb", "t", "h"))


def test_a_saved_template_may_use_only_its_types_variables() -> None:
    # A trigger's type gets title, message and any data key; the signup flow gets none of those.
    compiled = checked("promo", Body("{{ title }}", "{{ data.postId }}", "{{ message }}"))
    assert compiled.render({"title": "T", "message": "M", "data": {"postId": 7}})[:2] == ("T", "7")
    with pytest.raises(TemplateProblem, match="'title' is undefined"):
        checked("signup", Body("{{ title }}", "t", "h"))
