"""Language tags (BCP 47, the shape of `en`, `de-CH`, `zh-Hant-TW`) and which templates a
subscriber's locale tries, in order."""

from __future__ import annotations

import re
from functools import lru_cache

# A language of 2-3 letters, then subtags of 1-8 letters or digits; `_` is taken for `-`
# (`pt_BR` is how many systems spell it), as the subscribers' `locale` field takes it.
LOCALE_PATTERN = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$"
_LOCALE = re.compile(LOCALE_PATTERN)
MAX_LOCALE = 35


def is_locale(value: str) -> bool:
    return len(value) <= MAX_LOCALE and _LOCALE.fullmatch(value) is not None


def canonical(tag: str) -> str:
    """BCP 47's usual casing: `de-ch` -> `de-CH`, `zh_hant_tw` -> `zh-Hant-TW`."""
    language, *rest = tag.replace("_", "-").split("-")
    parts = [language.lower()]
    for sub in rest:
        if len(sub) == 4 and sub.isalpha():
            parts.append(sub.title())  # a script
        elif (len(sub) == 2 and sub.isalpha()) or (len(sub) == 3 and sub.isdigit()):
            parts.append(sub.upper())  # a region
        else:
            parts.append(sub.lower())
    return "-".join(parts)


@lru_cache(maxsize=4096)  # per email on the trigger path; there are few distinct locales
def chain(locale: str | None, default: str) -> tuple[str, ...]:
    """The locales to try for a recipient, most specific first: theirs, each shorter prefix
    of it down to the language (`de-CH` -> `de`), then the default. Canonical casing; a
    malformed locale counts as none."""
    tried: list[str] = []
    if locale and is_locale(locale):
        parts = canonical(locale).split("-")
        tried = ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]
    fallback = canonical(default)
    if fallback not in tried:
        tried.append(fallback)
    return tuple(tried)
