"""The generated references in ``docs/`` match the code they describe."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from larkbot.agent.tools import default_registry
from larkbot.config import Settings
from larkbot.config._schema import shape_of
from larkbot.mcp import PRESETS
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


def _rows(text: str, first_cell: str) -> dict[str, list[str]]:
    """The Markdown table rows whose first cell is a code span matching ``first_cell``."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and re.fullmatch(first_cell, cells[0].strip("`")):
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def _names(cell: str) -> list[str]:
    return re.findall(r"`([a-z_.]+)`", cell)


def test_the_preset_tables_list_each_presets_tools() -> None:
    for document in ("README.md", "docs/mcp.md"):
        text = (_ROOT / document).read_text(encoding="utf-8")
        rows = _rows(text, r"preset\.\w+")
        assert set(rows) == set(PRESETS), document
        for name, preset in PRESETS.items():
            if preset.tools:
                assert _names(rows[name][0]) == list(preset.tools), (document, name)


def test_the_mcp_guide_lists_every_tool_with_its_kind_and_presets() -> None:
    text = (_ROOT / "docs" / "mcp.md").read_text(encoding="utf-8")
    tools = list(default_registry())
    rows = _rows(text, "|".join(re.escape(tool.name) for tool in tools))
    assert list(rows) == [tool.name for tool in tools]
    for tool in tools:
        kind, presets = rows[tool.name]
        assert kind == ("write" if tool.write else "read"), tool.name
        assert _names(presets) == [
            name for name, preset in PRESETS.items() if tool.name in preset.tools
        ], tool.name


def test_doctor_checks_every_scope_the_stand_in_refuses_content_calls_without() -> None:
    # The stand-in answers 99991672 naming the scope a route needs; each is in the
    # README's table and in doctor's check, with a tool that declares it.
    from larkbot.cli._permissions import scope_needs
    from larkbot.testing._content_routes import _routes

    needs = {need.scope: need for need in scope_needs()}
    table = _generator().scopes_table()
    for scope in {route.scope for route in _routes.routes}:
        assert scope in needs and needs[scope].tools, scope
        assert f"| `{scope}` |" in table
