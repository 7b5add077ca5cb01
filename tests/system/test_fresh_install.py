"""The README's "Try it" commands, run as written against a fresh `herald serve` (what
`make run` starts) in an empty folder. Only the port differs: 8000 may be taken on a shared
machine. curl is made strict (`--fail-with-body`), so a 4xx fails the run."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from herald.core.redis import free_port
from tests.fixtures.paths import ROOT

README = ROOT / "README.md"
STRICT_CURL = 'curl() { command curl -sS --fail-with-body "$@"; echo; }\nset -e\n'


def try_it_block() -> str:
    text = README.read_text()
    match = re.search(r"Try it[^\n]*:\n\n```sh\n(.*?)```", text, re.DOTALL)
    assert match, "the README has a 'Try it' block"
    return match.group(1)


@pytest.fixture
def fresh_herald(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """`herald serve` with nothing configured, in an empty folder: what `make run` does."""
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HERALD_", "REDIS_", "EMAIL_", "DATABASE_URL", "FORWARDED_"))
    }
    env.update(PORT=str(port), HERALD_MAILBOX_PORT="0")
    process = subprocess.Popen(
        [sys.executable, "-m", "herald", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, "herald serve exited"
            assert time.monotonic() < deadline, "herald serve did not answer"
            time.sleep(0.2)
        yield tmp_path, port
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def test_try_it_works_as_written(fresh_herald: tuple[Path, int]) -> None:
    folder, port = fresh_herald
    block = try_it_block().replace("localhost:8000", f"localhost:{port}")
    run = bash(STRICT_CURL + block, folder)
    assert run.returncode == 0, run.stdout + run.stderr
    assert '"userId":1' in run.stdout and '"welcomeEmail"' in run.stdout, run.stdout
    # The last command shows the capture mailbox: the welcome email is there once the worker
    # has sent it, a moment later. Ask again (the TOKEN line first) until it is.
    token_line, last = block.splitlines()[0], block.strip().splitlines()[-1]
    deadline = time.monotonic() + 30
    while "ada@example.com" not in run.stdout and time.monotonic() < deadline:
        time.sleep(0.5)
        run = bash(STRICT_CURL + token_line + "\n" + last, folder)
        assert run.returncode == 0, run.stdout + run.stderr
    assert "ada@example.com" in run.stdout


def bash(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_the_data_folder_is_private(fresh_herald: tuple[Path, int]) -> None:
    folder, port = fresh_herald
    data = folder / "herald-data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    files = [p for p in data.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert "herald.db" in names and any("appendonly" in n for n in names), names
    shared = [str(p) for p in files if p.stat().st_mode & 0o077]
    assert shared == []


def test_pages_forbid_framing_and_foreign_scripts(fresh_herald: tuple[Path, int]) -> None:
    _, port = fresh_herald
    for page in ("/", "/dashboard"):
        answer = httpx.get(f"http://127.0.0.1:{port}{page}")
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert answer.headers["x-frame-options"] == "DENY"


def test_docs_load_nothing_from_elsewhere(fresh_herald: tuple[Path, int]) -> None:
    _, port = fresh_herald
    page = httpx.get(f"http://127.0.0.1:{port}/docs").text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets), page
    for asset in assets:
        assert asset.startswith(("/", "data:")), asset  # no CDN
        if asset.startswith("/"):
            assert httpx.get(f"http://127.0.0.1:{port}{asset}").status_code == 200, asset


def test_the_embedded_redis_needs_its_password(fresh_herald: tuple[Path, int]) -> None:
    folder, _ = fresh_herald
    url = (folder / "herald-data" / "redis" / "redis.url").read_text().strip()
    parts = urlsplit(url)
    assert (
        parts.password
        and stat.S_IMODE((folder / "herald-data" / "redis" / "password").stat().st_mode) == 0o600
    )
    anonymous = redis.Redis(host=parts.hostname, port=parts.port or 6379)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    anonymous.close()
    assert redis.Redis.from_url(url).ping()
