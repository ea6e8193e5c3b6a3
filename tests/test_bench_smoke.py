"""Smoke test of the benchmark: the quick echo scenario runs end to end and writes its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# The benchmark's own extra: ``pip install -e '.[bench]'``. Without it there is no run to
# smoke-test; the rest of the suite does not need it.
for _module in ("matplotlib", "psutil"):
    pytest.importorskip(_module, reason=f"{_module} is missing: install the bench extra")


@pytest.mark.slow
def test_quick_echo_bench_writes_results(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "echo", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,  # a guard against a hang, not a speed claim: a loaded machine is slow
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    echo = document["results"]["echo"]
    for side in ("larkbot", "sdk"):
        phases = echo[side]
        assert [phase["load"] for phase in phases] == ["20 in flight", "500/s", "flat out"]
        for phase in phases:
            assert phase["answered"] == phase["messages"] == 200
            assert phase["acked"] == 200
            assert phase["lost"] == 0 and phase["duplicates"] == 0
            assert phase["replies_per_s"] > 0
            assert 0 < phase["ack_p50_ms"] <= phase["ack_p99_ms"]
            # CPU per answer is measured for both bots and for the stand-in.
            assert phase["bot_cpu_ms_per_reply"] > 0
            assert phase["standin_cpu_ms_per_reply"] > 0
    metrics = {(row["scenario"], row["metric"]) for row in document["rows"]}
    assert ("echo flat out", "replies/s") in metrics
    assert ("echo 20 in flight", "CPU ms per reply") in metrics
    assert (tmp_path / "latest.png").stat().st_size > 0
    assert "echo flat out" in result.stdout
