"""The generated references in ``docs/`` match the code they describe."""

from __future__ import annotations

import importlib.util
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
