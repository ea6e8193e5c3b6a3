"""The generated references in ``docs/`` match the code they describe."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from larkbot.config import Settings
from larkbot.config._schema import shape_of
from larkbot.ops.metrics import REGISTRY

_ROOT = Path(__file__).resolve().parent.parent
_FIX = "run `python scripts/gen_docs.py`"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", _ROOT / "scripts" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_reference_is_current() -> None:
    committed = (_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == _generator().configuration_reference(), (
        f"docs/configuration.md is out of date: {_FIX}"
    )


def test_metrics_reference_is_current() -> None:
    committed = (_ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    assert committed == _generator().metrics_reference(), f"docs/metrics.md is out of date: {_FIX}"


def test_every_setting_is_described_and_documented() -> None:
    reference = _generator().configuration_reference()
    missing: list[str] = []

    def walk(model: type, prefix: str) -> None:
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            _, inner, _ = shape_of(field.annotation)
            if inner is not None:
                walk(inner, f"{prefix}{name}.")
            elif not field.description:
                missing.append(prefix + name)
            else:
                assert f"| `{name}` |" in reference

    walk(Settings, "")
    assert missing == [], f"add Field(description=...) for: {', '.join(missing)}"


def test_every_metric_is_documented() -> None:
    reference = _generator().metrics_reference()
    for family in REGISTRY.collect():
        assert f"`{family.name}" in reference


def test_readme_scopes_are_the_tools_declared_scopes() -> None:
    readme = (_ROOT / "README.md").read_text(encoding="utf-8")
    generator = _generator()
    assert readme == generator.readme_with_scopes(readme), (
        f"README.md's table of scopes is out of date: {_FIX}"
    )
    from larkbot.agent.tools.registry import default_registry

    table = generator.scopes_table()
    for tool in default_registry():
        for scope in tool.scopes:
            assert f"| `{scope}` |" in table and f"`{tool.name}`" in table
    # Scopes no tool and not the bot uses are not asked of operators.
    for unused in ("drive:drive", "docs:doc"):
        assert unused not in readme


def test_readme_console_transcript_is_what_the_console_prints() -> None:
    readme = (_ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = readme[readme.index("## Quick start") :]
    start = quick_start.index("```text\n") + len("```text\n")
    transcript = quick_start[start : quick_start.index("\n```", start)]
    welcome, *session = transcript.splitlines()
    typed = [line.removeprefix("you › ") for line in session if line.startswith("you › ")]
    printed = [line for line in session if not line.startswith("you › ")]

    result = subprocess.run(
        [sys.executable, "-m", "larkbot", "console"],
        input="\n".join(typed) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent"},
    )
    assert result.returncode == 0, result.stderr
    # Into a pipe the console prints the replies only: no welcome line, no prompts.
    assert result.stdout.splitlines() == printed
    assert welcome.startswith("larkbot console: a local Lark with sample data.")
    console_source = (_ROOT / "larkbot" / "cli" / "console.py").read_text(encoding="utf-8")
    assert "a local Lark with sample data. " in console_source
