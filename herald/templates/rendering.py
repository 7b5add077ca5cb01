"""Compiling and rendering email templates with Jinja2's sandbox.

Policy, in one place:
- Templates run in `jinja2.sandbox.SandboxedEnvironment`: no attribute starting with `_`, no
  function or method that changes data, ranges capped, and here `**` and `*` capped too; a
  template cannot reach Python's internals (`{{ ''.__class__.__mro__ }}` raises
  `SecurityError`). Loops are not capped beyond that: whoever may save templates (the `ops`
  scope) is trusted not to write `range(100000)` three times nested.
- The HTML part is autoescaped (a trigger's `<script>` arrives as `&lt;script&gt;`); the
  subject and the plain-text part are not (they are not HTML). The rendered subject is one
  line: line breaks and other control characters become spaces.
- Missing variables are errors (`StrictUndefined`), never silent blanks. A template is checked
  when it is saved (syntax, then a trial render with its type's sample variables, where a
  trigger's `data` answers any key); `{{ data.x | default("") }}` or `{% if data.x is
  defined %}` make a variable optional. Should a stored template still fail on a real email
  (a `data` key the trigger did not send), that email uses the built-in (herald.templates.store).
- The HTML part is the body: Herald's layout wraps it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from herald.templates.builtin import Body, sample

FIELDS = ("subject", "text", "html")

MAX_PRODUCT = 100_000  # longest string or list `*` may make; `**` exponents are capped too


class _Sandbox(SandboxedEnvironment):
    """Jinja2's sandbox, plus limits on the two operators that could make one render (or the
    compiler folding a constant: `{{ 9**9**9 }}`) take minutes or gigabytes: Jinja2's own
    recipe of intercepted binary operators."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int):
            bits = left.bit_length() if isinstance(left, int) else 64
            if abs(right) > 64 or bits * abs(right) > 4096:
                raise SecurityError("powers beyond 4096 bits are not allowed")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(times, int)
                if sized and len(seq) * times > MAX_PRODUCT:
                    raise SecurityError(f"results longer than {MAX_PRODUCT} are not allowed")
        return super().call_binop(context, operator, left, right)


# Plain text (subject, text) and HTML differ only in escaping.
_TEXT = _Sandbox(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)
_HTML = _Sandbox(autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True)
_ENVS = {"subject": _TEXT, "text": _TEXT, "html": _HTML}

LAYOUT_HEAD = (
    '<!doctype html><html><body style="font-family:system-ui,sans-serif;color:#1f2933;'
    'max-width:560px;margin:auto;padding:24px">'
)
LAYOUT_TAIL = '<p style="color:#7b8794;font-size:12px">Sent by Herald.</p></body></html>'
_NOT_ONE_LINE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


class TemplateProblem(Exception):
    """A template that cannot be used: which part, which line (when known) and why."""

    def __init__(self, field: str, message: str, line: int | None = None) -> None:
        self.field = field
        self.line = line
        self.reason = message
        super().__init__(f"{field}: line {line}: {message}" if line else f"{field}: {message}")

    @property
    def message(self) -> str:
        return f"line {self.line}: {self.reason}" if self.line else self.reason


@dataclass(frozen=True)
class Compiled:
    subject: Template
    text: Template
    html: Template

    def render(self, context: Mapping[str, Any]) -> tuple[str, str, str]:
        """(subject, text, html); raises TemplateProblem naming the part that failed."""
        subject = _NOT_ONE_LINE.sub(" ", _render("subject", self.subject, context))
        text = _render("text", self.text, context)
        html = LAYOUT_HEAD + _render("html", self.html, context) + LAYOUT_TAIL
        return subject, text, html


def compile_body(body: Body) -> Compiled:
    """The three parts compiled; TemplateProblem (with the line) for a syntax error."""
    compiled: dict[str, Template] = {}
    for field in FIELDS:
        try:
            compiled[field] = _ENVS[field].from_string(getattr(body, field))
        except TemplateSyntaxError as error:
            raise TemplateProblem(field, error.message or str(error), error.lineno) from None
        except (TemplateError, RecursionError, MemoryError) as error:  # nested far too deep
            raise TemplateProblem(field, f"cannot be compiled: {error!r}") from None
    return Compiled(**compiled)


def checked(kind: str, body: Body) -> Compiled:
    """Compile `body` and render it once with `kind`'s sample variables: what a save must
    pass. TemplateProblem names the part, the line and what is wrong."""
    if "\n" in body.subject or "\r" in body.subject:
        raise TemplateProblem("subject", "must be one line")
    compiled = compile_body(body)
    compiled.render(sample(kind))
    return compiled


# `Template.render` merges the environment's globals (a ChainMap) into every context it makes;
# iterating that ChainMap was half the cost of rendering a short part (timeit). The same
# globals, merged once into a plain dict, make the same context for a fraction of it.
_GLOBALS = dict(_HTML.globals)


def _render(field: str, template: Template, context: Mapping[str, Any]) -> str:
    try:
        # What Template.render does, with the globals merged above (new_context's shared=True:
        # "the data is passed as is"); handle_exception gives the template's line as render's.
        try:
            variables = template.new_context({**_GLOBALS, **context}, shared=True)
            return template.environment.concat(template.root_render_func(variables))
        except Exception:
            template.environment.handle_exception()
    except SecurityError as error:
        raise TemplateProblem(field, f"not allowed: {error}", _line(error.__traceback__)) from None
    except TemplateError as error:  # an undefined variable, a bad filter argument, ...
        raise TemplateProblem(field, str(error), _line(error.__traceback__)) from None
    except Exception as error:  # {{ 1 / 0 }}, {{ "a" + 1 }}: the template's fault all the same
        message = f"{type(error).__name__}: {error}"
        raise TemplateProblem(field, message, _line(error.__traceback__)) from None


def _line(tb: TracebackType | None) -> int | None:
    """The template line an error was raised on: Jinja2 rewrites tracebacks so that the
    template's own frames carry its file name and line."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
