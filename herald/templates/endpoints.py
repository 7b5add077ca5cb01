"""`/api/templates`: the email templates an operator changes, per type and locale.

Every endpoint takes the admin token or an API key with the `ops` scope."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from herald.apikeys.deps import require_scope
from herald.apikeys.models import Scope
from herald.apikeys.service import Principal
from herald.templates import locales, service
from herald.templates.schemas import (
    MAX_TYPE,
    TYPE_PATTERN,
    PreviewIn,
    PreviewOut,
    TemplateDeleted,
    TemplateIn,
    TemplateList,
    TemplateOut,
)
from herald.templates.store import TemplateStore
from herald.web.deps import DbDep, app_state
from herald.web.errors import errors

OperatorDep = Annotated[Principal, Depends(require_scope(Scope.OPS))]
TemplatesDep = Annotated[TemplateStore, app_state("templates")]

router = APIRouter(
    prefix="/api/templates",
    tags=["templates"],
    dependencies=[Depends(require_scope(Scope.OPS))],
    responses=errors(401, 403),
)

Kind = Annotated[
    str,
    Path(
        alias="type",
        min_length=1,
        max_length=MAX_TYPE,
        pattern=TYPE_PATTERN,
        description="a notification type: `signup`, `login`, `reset_password`, `purchase`, "
        "`generic` (every trigger type without its own) or a trigger's own type",
    ),
]
Locale = Annotated[
    str,
    Path(
        max_length=locales.MAX_LOCALE,
        pattern=locales.LOCALE_PATTERN,
        description="a BCP 47 language tag: `en`, `de`, `de-CH`",
    ),
]


def _who(principal: Principal) -> str:
    return "admin" if principal.key_id is None else f"key {principal.key_id} ({principal.name})"


@router.get("")
async def list_templates(db: DbDep, templates: TemplatesDep) -> TemplateList:
    """Every type with a built-in template or a stored one, and the locales stored for each."""
    return await service.listed(db, templates.default_locale)


@router.get("/{type}/{locale}", responses=errors(422))
async def get_template(kind: Kind, locale: Locale, db: DbDep) -> TemplateOut:
    """The template stored for exactly this type and locale (`source: stored`), or else the
    built-in its type falls back to (`source: builtIn`)."""
    return await service.shown(db, kind, locales.canonical(locale))


@router.put(
    "/{type}/{locale}",
    responses={201: {"model": TemplateOut, "description": "Created"}, **errors(422)},
)
async def put_template(
    kind: Kind,
    locale: Locale,
    data: TemplateIn,
    db: DbDep,
    templates: TemplatesDep,
    principal: OperatorDep,
    response: Response,
) -> TemplateOut:
    """Store (201) or replace (200) the template of this type and locale. It is checked
    first: a syntax error, an unknown variable or an unsafe attribute is a 422 naming the
    part (`subject`, `text`, `html`) and the line. Live in every API server within a second."""
    row, created = await service.save(db, kind, locales.canonical(locale), data, _who(principal))
    await templates.changed()
    if created:
        response.status_code = status.HTTP_201_CREATED
    return service.out(row)


@router.delete("/{type}/{locale}", responses=errors(404, 422))
async def delete_template(
    kind: Kind, locale: Locale, db: DbDep, templates: TemplatesDep
) -> TemplateDeleted:
    """Delete the stored template: emails fall back along the locale chain, to the built-in."""
    canonical = locales.canonical(locale)
    await service.remove(db, kind, canonical)
    await templates.changed()
    return TemplateDeleted(type=kind, locale=canonical, deleted=True)


@router.post("/{type}/{locale}/preview", responses=errors(422))
async def preview_template(
    kind: Kind, locale: Locale, data: PreviewIn, db: DbDep, templates: TemplatesDep
) -> PreviewOut:
    """Render with sample variables (`data` replaces any of them): an unsaved draft when the
    body carries `subject`, `text` or `html`, else what a recipient with this locale gets."""
    return await service.preview(db, templates, kind, locales.canonical(locale), data)
