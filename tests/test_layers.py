"""The package is built in layers, each importing only from the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cxr_anomaly"
#: Bottom to top; a module outside these folders (the CLI, ``__init__``) is the top.
LAYERS = ("core", "data", "models", "postprocess", "runtime", "evaluation", "reporting", "jobs")
TOP = len(LAYERS)


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else TOP


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[str]:
    """Every ``cxr_anomaly`` module ``path`` imports, at the top or inside a function."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "cxr_anomaly":
                found += [f"cxr_anomaly.{a.name}" for a in node.names if a.name != "__version__"]
            elif node.module.startswith("cxr_anomaly."):
                found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("cxr_anomaly.")]
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_imports_only_go_down(path: Path) -> None:
    own = _module_name(path)
    upward = [m for m in _imports(path) if _layer(m) > _layer(own)]
    assert not upward, f"{own} imports from a higher layer: {upward}"


def test_every_module_sits_in_a_layer() -> None:
    loose = {_module_name(p) for p in MODULES if _layer(_module_name(p)) == TOP}
    assert loose == {"cxr_anomaly", "cxr_anomaly.__main__", "cxr_anomaly.cli"}


def test_a_function_local_import_counts(tmp_path: Path) -> None:
    module = tmp_path / "example.py"
    module.write_text("def f():\n    from cxr_anomaly.jobs.study import evaluate_run\n")
    assert _imports(module) == ["cxr_anomaly.jobs.study"]
    assert _layer("cxr_anomaly.jobs.study") > _layer("cxr_anomaly.data.images")
