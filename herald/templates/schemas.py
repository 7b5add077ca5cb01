"""What `/api/templates` takes and answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from herald.core.schemas import CamelInput, CamelModel

# The generic trigger's `type` (herald.trigger.service.TriggerIn), and the built-ins'.
TYPE_PATTERN = r"^[a-z][a-z0-9_.-]*$"
MAX_TYPE = 32


class TemplateIn(CamelInput):
    subject: str = Field(min_length=1, max_length=998, description="one line; Jinja2, not escaped")
    text: str = Field(min_length=1, max_length=100_000, description="Jinja2, not escaped")
    html: str = Field(
        min_length=1,
        max_length=200_000,
        description="the body inside Herald's layout; Jinja2, every {{ value }} HTML-escaped",
    )


class TemplateOut(CamelModel):
    type: str
    locale: str
    subject: str
    text: str
    html: str
    source: Literal["stored", "builtIn"] = Field(
        description="`builtIn`: nothing is stored for exactly this locale; shown is the "
        "built-in its type falls back to"
    )
    updated_at: datetime | None
    updated_by: str | None
    variables: list[str] = Field(description="what this type's emails are given")


class StoredLocale(CamelModel):
    locale: str
    updated_at: datetime
    updated_by: str | None


class TypeSummary(CamelModel):
    type: str
    built_in: bool = Field(description="Herald ships a template for this type")
    variables: list[str]
    locales: list[StoredLocale] = Field(description="the locales stored for this type")


class TemplateList(CamelModel):
    default_locale: str
    types: list[TypeSummary]


class TemplateDeleted(CamelModel):
    type: str
    locale: str
    deleted: bool


class PreviewIn(CamelInput):
    data: dict[str, Any] = Field(
        default_factory=dict,
        description='variables replacing the type\'s sample ones, e.g. {"username": "Grace"}',
    )
    subject: str | None = Field(None, max_length=998, description="an unsaved draft's subject")
    text: str | None = Field(None, max_length=100_000)
    html: str | None = Field(None, max_length=200_000)


class PreviewOut(CamelModel):
    subject: str
    text: str
    html: str
    source: Literal["draft", "stored", "builtIn"]
    template_type: str = Field(description="the type whose template rendered (or `generic`)")
    template_locale: str | None = Field(description="the stored locale used; null: built-in")
