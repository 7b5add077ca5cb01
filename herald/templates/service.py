"""Reading and writing stored templates; checks, previews and answers for the endpoints."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.core.db import transaction, utcnow
from herald.core.errors import ApiError, NotFound
from herald.templates import builtin
from herald.templates.builtin import BUILT_IN, Body
from herald.templates.models import StoredTemplate
from herald.templates.rendering import TemplateProblem, checked, compile_body
from herald.templates.schemas import (
    PreviewIn,
    PreviewOut,
    StoredLocale,
    TemplateIn,
    TemplateList,
    TemplateOut,
    TypeSummary,
)
from herald.templates.store import TemplateStore


class TemplateInvalid(ApiError):
    """422 naming the part (`subject`, `text`, `html`) and, when known, the line."""

    status = 422
    code = "validation_error"

    def __init__(self, problem: TemplateProblem) -> None:
        detail: dict[str, Any] = {"field": problem.field, "message": problem.message}
        if problem.line is not None:
            detail["line"] = problem.line
        super().__init__(f"invalid {problem.field}: {problem.message}", [detail])


async def listed(db: async_sessionmaker[AsyncSession], default_locale: str) -> TemplateList:
    async with db() as session:
        rows = list(
            await session.scalars(
                select(StoredTemplate).order_by(StoredTemplate.type, StoredTemplate.locale)
            )
        )
    kinds = list(BUILT_IN) + sorted({r.type for r in rows} - set(BUILT_IN))
    return TemplateList(
        default_locale=default_locale,
        types=[
            TypeSummary(
                type=kind,
                built_in=kind in BUILT_IN,
                variables=builtin.variables(kind),
                locales=[
                    StoredLocale(locale=r.locale, updated_at=r.updated_at, updated_by=r.updated_by)
                    for r in rows
                    if r.type == kind
                ],
            )
            for kind in kinds
        ],
    )


async def shown(db: async_sessionmaker[AsyncSession], kind: str, locale: str) -> TemplateOut:
    """The stored template of exactly (kind, locale), or the built-in it falls back to."""
    async with db() as session:
        row = await session.get(StoredTemplate, (kind, locale))
    if row is not None:
        return out(row)
    body = BUILT_IN[builtin.family(kind)]
    return TemplateOut(
        type=kind,
        locale=locale,
        subject=body.subject,
        text=body.text,
        html=body.html,
        source="builtIn",
        updated_at=None,
        updated_by=None,
        variables=builtin.variables(kind),
    )


def out(row: StoredTemplate) -> TemplateOut:
    return TemplateOut(
        type=row.type,
        locale=row.locale,
        subject=row.subject,
        text=row.text,
        html=row.html,
        source="stored",
        updated_at=row.updated_at,
        updated_by=row.updated_by,
        variables=builtin.variables(row.type),
    )


async def save(
    db: async_sessionmaker[AsyncSession], kind: str, locale: str, data: TemplateIn, by: str
) -> tuple[StoredTemplate, bool]:
    """Check, then create or replace (kind, locale); True when it was created. A template
    that fails its check is refused (TemplateInvalid) and nothing is written."""
    body = Body(data.subject, data.text, data.html)
    try:
        checked(kind, body)
    except TemplateProblem as problem:
        raise TemplateInvalid(problem) from None
    try:
        return await _write(db, kind, locale, body, by)
    except IntegrityError:  # a concurrent first save of the same pair won: replace it
        return await _write(db, kind, locale, body, by)


async def _write(
    db: async_sessionmaker[AsyncSession], kind: str, locale: str, body: Body, by: str
) -> tuple[StoredTemplate, bool]:
    async with transaction(db) as session:
        row = await session.get(StoredTemplate, (kind, locale), with_for_update=True)
        created = row is None
        if row is None:
            row = StoredTemplate(type=kind, locale=locale)
            session.add(row)
        row.subject, row.text, row.html = body.subject, body.text, body.html
        row.updated_at, row.updated_by = utcnow(), by
    return row, created


async def remove(db: async_sessionmaker[AsyncSession], kind: str, locale: str) -> None:
    async with transaction(db) as session:
        result = await session.execute(
            delete(StoredTemplate).where(
                StoredTemplate.type == kind, StoredTemplate.locale == locale
            )
        )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFound(f"no stored template {kind}/{locale}")


async def preview(
    db: async_sessionmaker[AsyncSession],
    store: TemplateStore,
    kind: str,
    locale: str,
    data: PreviewIn,
) -> PreviewOut:
    """Render with the type's sample variables (those in `data.data` replacing them): the
    draft in `data` if it carries one (parts it leaves out come from the template shown for
    exactly this locale), else what a recipient with `locale` gets now."""
    context = {**builtin.sample(kind), **data.data}
    try:
        if data.subject is None and data.text is None and data.html is None:
            choice = store.resolve(kind, locale)[0]
            subject, text, html = choice.compiled.render(context)
            return PreviewOut(
                subject=subject,
                text=text,
                html=html,
                source="builtIn" if choice.locale is None else "stored",
                template_type=choice.type,
                template_locale=choice.locale,
            )
        current = await shown(db, kind, locale)
        draft = Body(
            data.subject if data.subject is not None else current.subject,
            data.text if data.text is not None else current.text,
            data.html if data.html is not None else current.html,
        )
        subject, text, html = compile_body(draft).render(context)
    except TemplateProblem as problem:
        raise TemplateInvalid(problem) from None
    return PreviewOut(
        subject=subject,
        text=text,
        html=html,
        source="draft",
        template_type=kind,
        template_locale=locale,
    )
