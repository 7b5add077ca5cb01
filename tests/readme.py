"""The README's code blocks, for the tests that run a section as written."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def blocks(section: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block under the heading `section` ("## Digests"), up to
    the next heading of that level."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index(f"\n{section}\n") + 1
    end = readme.find("\n## ", start + len(section))
    return re.findall(r"```(\w+)\n(.*?)```", readme[start:end], re.S)


def json_answers(printed: str) -> list[Any]:
    """The JSON documents curl printed one after another (with or without space between)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while at < len(printed.rstrip()):
        value, at = decoder.raw_decode(printed, at)
        found.append(value)
        while at < len(printed) and printed[at].isspace():
            at += 1
    return found
