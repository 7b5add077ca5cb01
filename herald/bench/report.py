"""Figures against targets: the JSON file, the Markdown table, and docs/benchmarks.md."""

from __future__ import annotations

import operator
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DOCS_START = "<!-- bench:results:start -->"
DOCS_END = "<!-- bench:results:end -->"


@dataclass(frozen=True)
class Target:
    scenario: str
    key: str
    label: str
    op: str  # ">=" or "<"
    target: float | None  # SPEC.md §10
    seed: float | None = None  # what the seed design promised

    def met(self, value: float, bound: float | None) -> bool | None:
        if bound is None:
            return None
        return (operator.ge if self.op == ">=" else operator.lt)(value, bound)


TARGETS = (
    Target("ingest", "perSecond", "Ingest, triggers/s (durable)", ">=", 1000),
    Target("ingest", "p99Ms", "Ingest p99, ms", "<", 50),
    Target("inapp", "p50Ms", "In-app trigger → socket p50, ms", "<", 20, seed=100),
    Target("inapp", "p99Ms", "In-app trigger → socket p99, ms", "<", 100, seed=100),
    Target("inapp", "drainPerSecond", "In-app deliveries/s per worker", ">=", None, seed=20),
    # p99 < 100 ms at 300/s (2,000 sockets): the rate where it crosses is past 300.
    Target("knee", "kneeRate", "Highest in-app rate with p99 < 100 ms, per s", ">=", 300),
    Target("email", "perSecond", "Emails/s per worker into SMTP", ">=", 300, seed=5),
    Target("sockets", "kbPerSocket", "Memory per idle socket, KB", "<", 30),
    Target("quiet", "worstMs", "In-app after a quiet gap (worst), ms", "<", 50, seed=100),
)

# Every figure a scenario must report (the smoke test holds the bench to this).
REQUIRED = {
    "ingest": ("perSecond", "p50Ms", "p95Ms", "p99Ms", "errors", "loadgenCpuShare"),
    "inapp": (
        "clients",
        "sent",
        "arrived",
        "p50Ms",
        "p95Ms",
        "p99Ms",
        "drainPerSecond",
        "loadgenCpuShare",
    ),
    "knee": ("kneeRate",),
    "email": ("perSecond", "drained", "workerCpuShare", "sinkCpuShare"),
    "sockets": ("sockets", "kbPerSocket", "baseRssMb"),
    "ceiling": ("bullmqJobsPerSecond", "socketioEmitsPerSecond", "loadgenCpuShare"),
    "quiet": ("after6sMs", "worstMs"),
}

# Herald's rate over its engine's bare rate, when both ran.
BULLMQ = ("ceiling", "bullmqJobsPerSecond")
RATIOS = (
    ("Email drain ÷ bare BullMQ no-op jobs", ("email", "perSecond"), BULLMQ),
    ("In-app drain ÷ bare BullMQ no-op jobs", ("inapp", "drainPerSecond"), BULLMQ),
    (
        "In-app drain ÷ bare python-socketio emits",
        ("inapp", "drainPerSecond"),
        ("ceiling", "socketioEmitsPerSecond"),
    ),
)


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memoryGb": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def missing(results: dict[str, Any]) -> list[str]:
    """Required figures a scenario that ran did not report."""
    gaps = []
    for scenario, figures in results.items():
        for key in REQUIRED.get(scenario, ()):
            if not isinstance(figures, dict) or figures.get(key) is None:
                gaps.append(f"{scenario}.{key}")
    return gaps


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _times(value: float, seed: float, op: str) -> str:
    factor = value / seed if op == ">=" else seed / max(value, 1e-9)
    return f"{factor:,.0f}× better" if factor >= 1 else f"{1 / factor:,.1f}× worse"


def markdown(report: dict[str, Any]) -> str:
    results = report["scenarios"]
    m = report["machine"]
    lines = [
        f"Run {report['date']} in {report['seconds']:.0f} s: `{report['command']}`  ",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memoryGb']} GB, Python {m['python']}, "
        f"Linux {m['kernel']}; {report['database']}, {report['redis']}.",
        "",
        "| Figure | Measured | Target | Met | Seed promise | vs. seed |",
        "|---|---:|---:|:---:|---:|---:|",
    ]
    for t in TARGETS:
        value = (results.get(t.scenario) or {}).get(t.key)
        if value is None:
            continue
        met = t.met(value, t.target)
        target = "" if t.target is None else f"{t.op} {_fmt(t.target)}"
        lines.append(
            f"| {t.label} | {_fmt(value)} | {target}"
            f" | {'' if met is None else ('yes' if met else '**no**')}"
            f" | {'' if t.seed is None else f'{t.op} {_fmt(t.seed)}'}"
            f" | {'' if t.seed is None else _times(value, t.seed, t.op)} |"
        )
    ratios = [
        (label, results[a][ak], results[b][bk])
        for label, (a, ak), (b, bk) in RATIOS
        if results.get(a, {}).get(ak) and results.get(b, {}).get(bk)
    ]
    if ratios:
        lines += [
            "",
            "| Herald ÷ its own engine, same run | Herald | Engine | Ratio |",
            "|---|---:|---:|---:|",
        ]
        lines += [f"| {label} | {_fmt(h)} | {_fmt(e)} | {h / e:.2f} |" for label, h, e in ratios]
    lines += _peer_table(results, report.get("peer") or {})
    lines += ["", "Every figure, by scenario:", ""]
    for scenario, figures in results.items():
        if isinstance(figures, dict) and "error" not in figures:
            shown = ", ".join(f"{k} {_fmt(v)}" for k, v in figures.items())
        else:
            shown = f"**failed**: {figures.get('error') if isinstance(figures, dict) else figures}"
        lines.append(f"- **{scenario}**: {shown}")
    return "\n".join(lines) + "\n"


# Figures held side by side with the peer: (label, scenario, key, higher is better).
PEER_FIGURES = (
    ("ingest, triggers/s", "ingest", "perSecond", True),
    ("ingest p99, ms", "ingest", "p99Ms", False),
    ("in-app trigger → socket p50, ms", "inapp", "p50Ms", False),
    ("in-app trigger → socket p99, ms", "inapp", "p99Ms", False),
    ("in-app deliveries/s, one worker", "inapp", "drainPerSecond", True),
    ("highest in-app rate with p99 < 100 ms, per s", "knee", "kneeRate", True),
    ("email drain, one worker, messages/s", "email", "perSecond", True),
    ("KB per idle socket", "sockets", "kbPerSocket", False),
    ("sockets connected + authenticated/s, first 5,000", "sockets", "connectPerSecond5000", True),
    ("sockets connected + authenticated/s, next 5,000", "sockets", "connectPerSecond10000", True),
    ("API CPU ms per socket connect", "sockets", "apiCpuMsPerConnect10000", False),
    ("worst in-app latency after a quiet gap, ms", "quiet", "worstMs", False),
    ("in-app: API CPU µs per notification", "inapp", "apiCpuUsPerNotification", False),
    ("in-app: worker CPU µs per notification", "inapp", "workerCpuUsPerNotification", False),
    ("in-app: Redis commands per notification", "inapp", "redisCommandsPerNotification", False),
    (
        "in-app: database transactions per notification",
        "inapp",
        "dbTransactionsPerNotification",
        False,
    ),
)


def _peer_table(herald: dict[str, Any], peer: dict[str, Any]) -> list[str]:
    """Herald beside the peer, as a ratio where 1.0 or more means Herald is as good or better."""
    rows = []
    for label, scenario, key, higher_better in PEER_FIGURES:
        h, p = (herald.get(scenario) or {}).get(key), (peer.get(scenario) or {}).get(key)
        if h is None or p is None:
            continue
        ratio = h / max(p, 1e-9) if higher_better else p / max(h, 1e-9)
        rows.append(f"| {label} | {_fmt(h)} | {_fmt(p)} | {ratio:.2f} |")
    if not rows:
        return []
    return [
        "",
        "| Same run, one API and one worker each | Herald | seedstack | Herald ÷ peer |",
        "|---|---:|---:|---:|",
        *rows,
    ]


def update_docs(path: Path, table: str) -> None:
    """Replace the generated block of the docs page; the prose around it is kept."""
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{DOCS_START}\n{DOCS_END}\n"
    if DOCS_START not in text:
        text += f"\n{DOCS_START}\n{DOCS_END}\n"
    head, _, rest = text.partition(DOCS_START)
    _, _, tail = rest.partition(DOCS_END)
    path.write_text(f"{head}{DOCS_START}\n{table}{DOCS_END}{tail}")
