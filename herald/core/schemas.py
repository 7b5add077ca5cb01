"""Base for every JSON model: snake_case in Python, camelCase on the wire."""

from __future__ import annotations

import math
import unicodedata
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


def _one_line(value: str) -> str:
    # A title becomes an email's Subject header: a CR or LF in it would start a header of the
    # sender's choosing (Reply-To, Bcc). Other control characters have no place in a title.
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value):
        raise ValueError("must be one line, without control characters")
    return value


# Text that may end up in a header (an email subject): one line, no control characters.
OneLine = Annotated[str, AfterValidator(_one_line)]


class CamelInput(CamelModel):
    """A request body. Text must be storable as it is: PostgreSQL refuses NUL characters, and
    no database can encode a lone surrogate or store NaN in JSON, so those are a 422 here
    rather than a 500 later."""

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        _check_storable(value)
        return value


def _check_storable(value: Any, depth: int = 0) -> None:
    if depth > 32:
        raise ValueError("nested too deeply (32 levels at most)")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode text") from None
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("numbers must be finite")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_storable(key, depth + 1)
            _check_storable(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_storable(item, depth + 1)
