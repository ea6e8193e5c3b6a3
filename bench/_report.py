"""Turn scenario figures into table rows, a rich table, machine facts, JSON and a chart."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

__all__ = [
    "Row",
    "echo_summary",
    "machine_facts",
    "markdown_table",
    "print_table",
    "rows_of",
    "write_chart",
    "write_json",
]


@dataclass(frozen=True)
class Row:
    """One line of the table: a metric for both bots, their ratio and its target."""

    scenario: str
    metric: str
    larkbot: float | None
    sdk: float | None
    target: str = ""
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        """``larkbot / sdk``; ``None`` when either side is missing or the SDK side is 0."""
        if self.larkbot is None or self.sdk is None or self.sdk == 0:
            return None
        return self.larkbot / self.sdk


def machine_facts() -> dict[str, Any]:
    """CPU model, cores, RAM, OS, Python and the versions that matter."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "n/a"

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "larkbot": version("larkbot"),
        "lark-oapi": version("lark-oapi"),
    }


def _phase(phases: list[dict[str, Any]] | None, load: str) -> dict[str, Any]:
    for phase in phases or []:
        if phase.get("load") == load:
            return phase
    return {}


def _at_most(limit: float) -> Callable[[float | None], bool | None]:
    return lambda value: None if value is None else value <= limit


_ECHO_METRICS = (
    ("replies_per_s", "replies/s"),
    ("bot_cpu_ms_per_reply", "CPU ms per reply"),
    ("standin_cpu_ms_per_reply", "stand-in CPU ms per reply"),
    ("ack_p50_ms", "ack p50 ms"),
    ("ack_p99_ms", "ack p99 ms"),
    ("ack_max_ms", "ack max ms"),
    ("bot_ack_p50_ms", "own ack p50 ms (biz_rt)"),
    ("bot_ack_p99_ms", "own ack p99 ms (biz_rt)"),
    ("reply_p50_ms", "reply p50 ms"),
    ("reply_p99_ms", "reply p99 ms"),
    ("acks_over_3s", "acks > 3 s"),
    ("refused_acks", "refused acks (re-delivered)"),
    ("reconnects", "connection drops"),
    ("lost", "lost"),
    ("duplicates", "duplicates"),
)
_ACK_TARGET_LOADS = ("100 in flight", "1000/s")
# Loads the bot sustains by construction (the sender waits for answers): no ack over 50 ms.
_SUSTAINED_LOADS = ("20 in flight", "100 in flight", "200 in flight")


def _echo_target(
    load: str, key: str, ours: dict[str, Any], theirs: dict[str, Any]
) -> tuple[str, bool | None]:
    """The target of one echo figure and whether larkbot met it."""
    value = ours.get(key)
    if key == "bot_cpu_ms_per_reply":
        return "≤ 0.5", _at_most(0.5)(value)
    if key in ("ack_p99_ms", "bot_ack_p99_ms") and load in _ACK_TARGET_LOADS:
        return "≤ 10", _at_most(10)(value)
    if key == "ack_max_ms" and load in _SUSTAINED_LOADS:
        return "≤ 50", _at_most(50)(value)
    if key == "replies_per_s" and load == "flat out" and ours and theirs:
        return "≥ 3× SDK", ours[key] >= 3 * theirs[key]
    if key in ("duplicates", "lost"):
        return "0", None if value is None else value == 0
    return "", None


def _echo_rows(echo: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for ours in echo.get("larkbot") or []:
        load = ours["load"]
        theirs = _phase(echo.get("sdk"), load)
        for key, label in _ECHO_METRICS:
            target, met = _echo_target(load, key, ours, theirs)
            rows.append(Row(f"echo {load}", label, ours.get(key), theirs.get(key), target, met))
    return rows


def _replica_rows(scaled: dict[str, Any]) -> list[Row]:
    """Rows of the replicas scenario (larkbot only: the SDK pattern has no shared state)."""
    rows: list[Row] = []
    for run in scaled.get("runs") or []:
        name = f"replicas ×{run['replicas']}"
        redis = run["redis_per_message"]
        rows += [
            Row(name, "replies/s", run["replies_per_s"], None),
            Row(name, "ack p50 ms", run["ack_p50_ms"], None),
            Row(name, "ack p99 ms", run["ack_p99_ms"], None),
            Row(name, "Redis commands/msg", redis["commands"], None),
            Row(name, "Redis scripts/msg", redis["scripts"], None),
            Row(name, "CPU ms/msg larkbot", run["cpu_ms_per_message"]["larkbot"], None),
            Row(name, "CPU ms/msg Redis", run["cpu_ms_per_message"]["redis"], None),
            Row(name, "duplicates", run["duplicates"], None, "0", run["duplicates"] == 0),
            Row(name, "chats out of send order", run["chats_out_of_order"], None),
        ]
    return rows


def rows_of(results: dict[str, Any]) -> list[Row]:
    """Every table row the results support, in scenario order."""
    rows: list[Row] = []
    if "echo" in results:
        rows += _echo_rows(results["echo"])
    if "slow" in results:
        ours, theirs = results["slow"].get("larkbot") or {}, results["slow"].get("sdk") or {}
        answered = ours.get("all_answered_s")
        rows += [
            Row(
                "slow agent",
                "all answered s",
                answered,
                theirs.get("all_answered_s"),
                "≤ 1.5",
                _at_most(1.5)(answered),
            ),
            Row("slow agent", "ack p99 ms", ours.get("ack_p99_ms"), theirs.get("ack_p99_ms")),
            Row(
                "slow agent",
                "acks > 3 s",
                ours.get("acks_over_3s"),
                theirs.get("acks_over_3s"),
                "0",
                None if not ours else ours.get("acks_over_3s") == 0,
            ),
        ]
    if "reply" in results:
        ours, theirs = results["reply"]["larkbot"], results["reply"]["sdk"]
        met = ours["replies_per_s"] >= 3 * theirs["replies_per_s"]
        rows.append(
            Row(
                "reply path",
                "replies/s",
                ours["replies_per_s"],
                theirs["replies_per_s"],
                "≥ 3× SDK",
                met,
            )
        )
    if "memory" in results:
        mem = results["memory"]
        label = f"RSS MB {mem['chats']}×{mem['turns']}"
        rows.append(
            Row("memory", label, mem["rss_mb"], None, "≤ 150", _at_most(150)(mem["rss_mb"]))
        )
        rows.append(Row("memory", "conversations cached", mem["conversations_cached"], None))
    if "echo" in results:
        echo = results["echo"]
        rows.append(
            Row("memory", "RSS MB after echo", echo.get("larkbot_rss_mb"), echo.get("sdk_rss_mb"))
        )
    rows += _replica_rows(results.get("replicas") or {})
    if "startup" in results:
        ours, theirs = results["startup"]["larkbot"], results["startup"]["sdk"]
        rows.append(
            Row(
                "start-up",
                "spawn to ready s",
                ours["median_s"],
                theirs["median_s"],
                "≤ 2",
                _at_most(2)(ours["median_s"]),
            )
        )
    return rows


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if float(value).is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"


def print_table(rows: list[Row], facts: dict[str, Any], notes: list[str]) -> None:
    """Print the results table and the machine facts with rich."""
    table = Table(title="larkbot vs lark-oapi's bot pattern (local Lark stand-in)")
    for column in ("scenario", "metric", "larkbot", "SDK", "ratio", "target", "met?"):
        table.add_column(column, justify="left" if column in {"scenario", "metric"} else "right")
    for row in rows:
        met = "" if row.met is None else ("yes" if row.met else "NO")
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}×"
        table.add_row(
            row.scenario, row.metric, _fmt(row.larkbot), _fmt(row.sdk), ratio, row.target, met
        )
    console = Console(width=120)
    console.print(table)
    console.print("Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items()))
    for note in notes:
        console.print(f"[dim]• {note}[/dim]")


def markdown_table(rows: list[Row]) -> str:
    """The same table in Markdown, for the README's Performance section."""
    lines = [
        "| scenario | metric | larkbot | SDK pattern | ratio | target | met? |",
        "|---|---|--:|--:|--:|--:|:-:|",
    ]
    for row in rows:
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}×"
        lines.append(
            f"| {row.scenario} | {row.metric} | {_fmt(row.larkbot)} | {_fmt(row.sdk)} | "
            f"{ratio} | {row.target} | {met} |"
        )
    return "\n".join(lines)


_SUMMARY_COLUMNS = (
    ("replies_per_s", "replies/s"),
    ("bot_cpu_ms_per_reply", "CPU ms per reply"),
    ("ack_p50_ms", "ack p50 ms"),
    ("ack_p99_ms", "ack p99 ms"),
)


def echo_summary(echo: dict[str, Any]) -> str:
    """The echo figures as one compact Markdown table: a row per load, both bots side by side.

    This is the table of the README's Performance section.
    """
    header = ["echo load"]
    for _, label in _SUMMARY_COLUMNS:
        header += [f"{label} larkbot", f"{label} SDK"]
    header.append("larkbot's own ack p99 ms")
    lines = ["| " + " | ".join(header) + " |", "|---" + "|--:" * (len(header) - 1) + "|"]
    for ours in echo.get("larkbot") or []:
        theirs = _phase(echo.get("sdk"), ours["load"])
        cells = [ours["load"]]
        for key, _ in _SUMMARY_COLUMNS:
            cells += [_fmt(ours.get(key)), _fmt(theirs.get(key))]
        cells.append(_fmt(ours.get("bot_ack_p99_ms")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(path: Path, results: dict[str, Any], rows: list[Row], meta: dict[str, Any]) -> None:
    """Write everything measured, the table rows and the run's facts to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        **meta,
        "results": results,
        "rows": [{**asdict(row), "ratio": row.ratio} for row in rows],
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_chart(path: Path, results: dict[str, Any]) -> None:
    """Draw the echo rates, the reply path and start-up side by side as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    width = 0.38
    echo = results.get("echo") or {}
    phases = echo.get("larkbot") or []
    labels = [p["load"] for p in phases]
    for axis, key, title in (
        (axes[0], "replies_per_s", "Echo: replies/s"),
        (axes[1], "ack_p99_ms", "Echo: ack p99 (ms, log)"),
    ):
        for shift, side in ((-width / 2, "larkbot"), (width / 2, "sdk")):
            values = [_phase(echo.get(side), p["load"]).get(key) or 0 for p in phases]
            axis.bar([i + shift for i in range(len(phases))], values, width, label=side)
        axis.set_xticks(range(len(phases)), labels)
        axis.set_title(title)
        axis.legend()
    axes[1].set_yscale("log")
    pairs = []
    if "reply" in results:
        pairs.append(("reply path\nreplies/s ÷100", "reply", lambda r: r["replies_per_s"] / 100))
    if "startup" in results:
        pairs.append(("start-up s", "startup", lambda r: r["median_s"]))
    if "slow" in results:
        pairs.append(
            ("slow agent\nall answered s", "slow", lambda r: (r or {}).get("all_answered_s") or 0)
        )
    for index, (_label, key, pick) in enumerate(pairs):
        for shift, side, colour in ((-width / 2, "larkbot", "C0"), (width / 2, "sdk", "C1")):
            axes[2].bar(index + shift, pick(results[key].get(side)), width, color=colour)
    axes[2].set_xticks(range(len(pairs)), [p[0] for p in pairs])
    axes[2].set_title("Reply path, start-up, slow agent")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
