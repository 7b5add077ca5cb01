"""`herald bench --quick` once, as a smoke test: it completes and reports every figure.
Speed is the bench's business, never a test's: nothing here compares a figure with a target."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from herald.bench.report import PEER_FIGURES, REQUIRED, TARGETS, _peer_table, update_docs
from herald.bench.timelines import LEGS


@pytest.mark.timeout(600)
def test_quick_bench_reports_every_figure(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "herald",
            "bench",
            "--quick",
            "--out",
            str(tmp_path / "out"),
            "--docs",
            str(tmp_path / "benchmarks.md"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=580,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert set(result["scenarios"]) == set(REQUIRED)
    assert result["missing"] == []
    for scenario, keys in REQUIRED.items():
        figures = result["scenarios"][scenario]
        assert all(isinstance(figures[k], int | float) for k in keys), (scenario, figures)
    inapp = result["scenarios"]["inapp"]
    assert inapp["arrived"] >= inapp["sent"] > 0  # every accepted notification reached its socket
    for leg in LEGS:  # where the in-app latency went, from Herald's own timelines
        assert 0 <= inapp[f"{leg}p50Ms"] <= inapp[f"{leg}p95Ms"] <= inapp[f"{leg}p99Ms"], leg
    knee = result["scenarios"]["knee"]  # each step's figures, up to the rate reported
    assert knee["kneeRate"] in (0, 50, 100) and knee["p50MsAt50"] <= knee["p99MsAt50"]
    assert result["machine"]["cores"] >= 1 and result["command"].startswith("herald bench")
    page = (tmp_path / "benchmarks.md").read_text()
    for target in TARGETS:
        assert target.label in page


def test_docs_update_keeps_the_prose_around_the_table(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    update_docs(page, "first table\n")
    page.write_text(
        "# Title\n\nprose before\n" + page.read_text().split("\n", 2)[2] + "prose after\n"
    )
    update_docs(page, "second table\n")
    text = page.read_text()
    assert "prose before" in text and "prose after" in text
    assert "second table" in text and "first table" not in text


def test_the_peer_table_holds_every_shared_figure_as_herald_over_peer() -> None:
    """Each figure both sides measured gets a row; the ratio is ≥ 1 where Herald is better,
    whether higher (a rate) or lower (a latency, a cost) is better for that figure."""
    herald = {s: {k: 2.0 for _, s2, k, _ in PEER_FIGURES if s2 == s} for _, s, _, _ in PEER_FIGURES}
    peer = {s: {k: 4.0 for k in figures} for s, figures in herald.items()}
    rows = [line for line in _peer_table(herald, peer) if line.startswith("| ") and "÷" not in line]
    assert [row.split(" | ")[0][2:] for row in rows] == [label for label, *_ in PEER_FIGURES]
    for row, (_, _, _, higher_better) in zip(rows, PEER_FIGURES, strict=True):
        assert row.endswith("| 0.50 |" if higher_better else "| 2.00 |"), row
    assert any("connected + authenticated" in row for row in rows)
