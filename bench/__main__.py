"""``python -m bench [--quick] [--only echo,slow,reply,memory,startup,replicas] [--out DIR]``.

``--echo-count N`` changes the messages per echo load (handy with a profiler attached).
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import anyio

from bench._report import (
    echo_summary,
    machine_facts,
    markdown_table,
    print_table,
    rows_of,
    write_chart,
    write_json,
)
from bench._scenarios import (
    Sizes,
    echo_load,
    memory,
    replicas,
    reply_path,
    slow_agent,
    start_up,
)

__all__ = ["main"]

_SCENARIOS: dict[str, Callable[[Sizes, Path], Awaitable[dict[str, Any]]]] = {
    "echo": echo_load,
    "slow": slow_agent,
    "reply": reply_path,
    "memory": memory,
    "startup": start_up,
    "replicas": replicas,
}
_NOTES = [
    "Each bot runs in its own process; the Lark stand-in runs in this one, on the same machine.",
    "larkbot runs with LARKBOT_RATE_LIMITING__ENABLED=false: the per-user request limit "
    "would otherwise throttle a load test. Store: SQLite (the production default).",
    "larkbot answers 'ping' with its offline brain (the 'pong' command); the SDK pattern "
    "replies 'pong' with the synchronous client.im.v1.message.reply of its README.",
    "Ack latency: stand-in writes the frame -> ack arrives. Reply latency: frame written -> "
    "reply recorded by the stand-in. 'acks > 3 s' would be re-delivered by the platform.",
    "CPU ms per reply: the bot process's CPU time (user + system) during a load divided by "
    "the replies it posted; 'stand-in' is this process's (the local Lark's) for the same load. "
    "Both bots log at INFO (larkbot: one JSON line per reply).",
    "Loads: 'N in flight' keeps at most N messages unanswered; 'N/s' offers them on a "
    "schedule; 'flat out' sends all at once. Refused acks come back a second later, as the "
    "platform re-delivers them.",
    "Reply path: LarkClient.reply and lark-oapi's areply each run in their own process "
    "against the stand-in here (the SDK's blocking token fetch cannot share the server's loop).",
]


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument(
        "--only", default=",".join(_SCENARIOS), help="comma-separated: " + ", ".join(_SCENARIOS)
    )
    parser.add_argument(
        "--echo-count", type=int, default=None, help="messages per echo load (for profiling)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        help="where latest.json and latest.png go",
    )
    args = parser.parse_args()
    unknown = set(args.only.split(",")) - set(_SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    return args


async def _run(
    names: list[str], sizes: Sizes, workdir: Path, seconds: dict[str, float]
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in names:
        started = time.perf_counter()
        print(f"running {name}...", flush=True)
        try:
            results[name] = await _SCENARIOS[name](sizes, workdir)
        except Exception as exc:
            # One failed scenario must not throw away the figures of the others.
            print(f"  {name} failed: {type(exc).__name__}: {exc}", flush=True)
            continue
        finally:
            seconds[name] = round(time.perf_counter() - started, 1)
        print(f"  {name} took {seconds[name]:.1f} s", flush=True)
    return results


def main() -> None:
    """Run the chosen scenarios, print the table, write JSON, PNG and the Markdown table."""
    args = _parse()
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.echo_count is not None:
        sizes = replace(sizes, echo_count=args.echo_count)
    names = [name for name in _SCENARIOS if name in args.only.split(",")]
    facts = machine_facts()
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    # The stand-in runs in this process: what was imported and built so far stays out of
    # its garbage collections, which would otherwise stall it mid-load (see _scenarios).
    gc.freeze()
    with tempfile.TemporaryDirectory(prefix="larkbot-bench-") as workdir:
        results = anyio.run(_run, names, sizes, Path(workdir), seconds)
    seconds["total"] = round(time.perf_counter() - started, 1)
    notes = list(_NOTES)
    slow = results.get("slow") or {}
    if slow.get("larkbot_note"):
        notes.append(slow["larkbot_note"])
    scaled = results.get("replicas") or {}
    if scaled.get("skipped"):
        notes.append(f"replicas: skipped, {scaled['skipped']}")
    elif scaled:
        notes.append(
            f"replicas: N `larkbot run` processes on one Redis (AOF everysec), stand-in in "
            f"cluster mode, LLM stand-in answering in {scaled['delay_s']:g} s, at most "
            f"{scaled['concurrency_per_replica']} answers at once per replica; "
            f"{scaled['messages']} messages over {scaled['chats']} chats, at most twice the "
            "replicas' joint concurrency unanswered at once. "
            "Redis commands per message include those inside scripts and the replicas' "
            "heartbeats and lease renewals during the run. Each chat is answered in the order "
            "Redis took its messages in; two messages of a chat sent a few ms apart to different "
            "replicas may reach Redis in either order, which 'chats out of send order' counts."
        )
    rows = rows_of(results)
    print_table(rows, facts, notes)
    meta = {
        "machine": facts,
        "quick": args.quick,
        "sizes": asdict(sizes),
        "notes": notes,
        "seconds": seconds,
    }
    write_json(args.out / "latest.json", results, rows, meta)
    write_chart(args.out / "latest.png", results)
    tables = [echo_summary(results["echo"])] if "echo" in results else []
    tables.append(markdown_table(rows))
    (args.out / "latest.md").write_text("\n\n".join(tables) + "\n", encoding="utf-8")
    written = ", ".join(str(args.out / name) for name in ("latest.json", "latest.png", "latest.md"))
    print(f"results: {written}")
    print(f"the whole run took {seconds['total'] / 60:.1f} minutes")


if __name__ == "__main__":
    main()
