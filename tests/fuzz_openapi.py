"""Schemathesis over a running Herald's /openapi.json; run as `python -m tests.fuzz_openapi`.

It runs in its own process, not a thread of the test's: CPython 3.11 can fail with
"AST constructor recursion depth mismatch" when two threads compile code at once, and both
Hypothesis and the server under test do. Reads {"url", "adminToken", "email", "password"} as
JSON on stdin; prints the failures as a JSON list on stdout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = {GenerationMode.POSITIVE: 15, GenerationMode.NEGATIVE: 10}


def fuzz(url: str, callers: dict[str, Callable[[], dict[str, str]]]) -> list[str]:
    """Run every operation for every caller and mode; the failures, one entry each."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures: list[str] = []
    with requests.Session() as http:
        for result in schema.get_all_operations():
            operation = result.ok()
            for caller, headers_for in callers.items():
                for mode, examples in EXAMPLES.items():
                    test = _property(operation, mode, examples, url, http, headers_for())
                    try:
                        test()
                    except Unsatisfiable:
                        pass  # no parameters: there is no invalid input to make
                    except Exception as exc:  # one failing operation must not hide the rest
                        failures.append(f"{operation.label} [{caller}, {mode.value}]: {_why(exc)}")
    return failures


def _why(exc: Exception) -> str:
    """The failure with what it groups: Hypothesis reports a failure that did not repeat as a
    group whose members say what the first call got."""
    parts = [str(exc)]
    if isinstance(exc, BaseExceptionGroup):
        parts += [f"  {type(e).__name__}: {e}"[:2000] for e in exc.exceptions]
    return "\n".join(parts)


def _property(
    operation: Any,
    mode: GenerationMode,
    examples: int,
    url: str,
    http: requests.Session,
    headers: dict[str, str],
) -> Callable[[], None]:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        case.call_and_validate(base_url=url, session=http, headers=headers, checks=CHECKS)

    return run  # type: ignore[no-any-return]


def main() -> None:
    options = json.load(sys.stdin)
    url = options["url"]

    def fresh_session() -> dict[str, str]:
        # A new session per operation: the fuzzer may well log itself out with DELETE.
        r = requests.post(
            f"{url}/api/session",
            json={"email": options["email"], "password": options["password"]},
            timeout=30,
        )
        r.raise_for_status()
        return {"Authorization": f"Bearer {r.json()['sessionToken']}"}

    callers = {
        "admin": lambda: {"Authorization": f"Bearer {options['adminToken']}"},
        "user": fresh_session,
    }
    json.dump(fuzz(url, callers), sys.stdout)


if __name__ == "__main__":
    main()
