"""The import graph reads like the architecture: no cycles, no stage importing a later one.

The path is ``sources → admission → dispatch → agent → reply``; core types lie below
everything, the Lark client and the packages beside the path (config, ops, store) below the
stages, and the assembly (daemon), the front ends (cli, mcp) and the stand-in on top.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parent.parent / "larkbot"

# What each top-level package of larkbot may import, besides itself and ``larkbot``'s
# version. A stage may import earlier stages (rarely needed: they talk through core).
_BELOW_STAGES = {"core", "config", "ops", "lark", "store"}
_ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "config": {"core"},
    "ops": {"core", "config"},
    "lark": {"core", "ops"},
    "store": {"core", "config", "ops"},
    "sources": _BELOW_STAGES,
    "admission": _BELOW_STAGES | {"sources"},
    "dispatch": _BELOW_STAGES | {"sources", "admission"},
    "agent": _BELOW_STAGES | {"sources", "admission", "dispatch"},
    "reply": _BELOW_STAGES | {"sources", "admission", "dispatch", "agent"},
    "daemon": _BELOW_STAGES | {"sources", "admission", "dispatch", "agent", "reply"},
    "mcp": _BELOW_STAGES | {"sources", "admission", "dispatch", "agent", "reply", "daemon"},
    "testing": _BELOW_STAGES | {"sources", "admission"},
    "cli": _BELOW_STAGES
    | {"sources", "admission", "dispatch", "agent", "reply", "daemon", "mcp", "testing"},
}
_TOP_LEVEL_MODULES = {"__init__", "__main__"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """``(runtime, type_checking_only)`` larkbot modules imported by the file at ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                type_only.update(id(n) for n in ast.walk(inner))
    runtime: set[str] = set()
    typing: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            if name == "larkbot" or name.startswith("larkbot."):
                (typing if id(node) in type_only else runtime).add(name)
    return runtime, typing


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    files = {_module_name(p): p for p in _ROOT.rglob("*.py") if "_vendor" not in p.parts}
    runtime: dict[str, set[str]] = defaultdict(set)
    everything: dict[str, set[str]] = defaultdict(set)
    for module, path in files.items():
        run, typ = _imports(path)
        # Keep only names that are modules (``from a import b`` where b is a function
        # resolves to ``a``).
        runtime[module] = {n for n in run if n in files and n != module}
        everything[module] = runtime[module] | {n for n in typ if n in files and n != module}
    return runtime, everything


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_import_cycles_inside_larkbot() -> None:
    runtime, _ = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(runtime.get(module, ())):
            # A package's __init__ importing its own submodules is how packages export.
            if target.startswith(module + "."):
                continue
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(runtime):
        if module not in state:
            visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(" → ".join(c) for c in cycles)


def test_no_package_imports_against_the_layers() -> None:
    _, everything = _graph()
    wrong: list[str] = []
    for module, targets in sorted(everything.items()):
        source = _top(module)
        if source in _TOP_LEVEL_MODULES or source == "":
            continue
        assert source in _ALLOWED, f"list the new package {source!r} in _ALLOWED"
        for target in sorted(targets):
            package = _top(target)
            if package in ("", source) or package in _ALLOWED[source]:
                continue
            wrong.append(f"{module} → {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


@pytest.mark.parametrize(
    ("module", "must_not_load"),
    [
        ("larkbot.reply", ("larkbot.agent",)),
        ("larkbot.core", ("larkbot.agent", "larkbot.lark", "larkbot.reply", "larkbot.store")),
        ("larkbot.lark", ("larkbot.agent", "larkbot.reply", "larkbot.admission")),
    ],
)
def test_importing_a_stage_loads_nothing_after_it(
    module: str, must_not_load: tuple[str, ...]
) -> None:
    code = (
        f"import sys, {module}; "
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('larkbot'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    leaked = [m for m in loaded if m.startswith(must_not_load)]
    assert not leaked, f"importing {module} loaded {leaked}"
