"""The README's generated blocks come from results files, and --check notices stale ones."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def updater() -> ModuleType:
    return load_benchmark("update_readme")


def _results() -> dict[str, object]:
    image = {
        "auroc": 0.8123,
        "auroc_ci": [0.77, 0.85],
        "ap": 0.8,
        "ap_ci": [0.75, 0.84],
        "sens_at_90spec": 0.5,
        "sens_at_95spec": 0.4,
    }
    return {
        "command": "cxr-anomaly demo",
        "wall_seconds": 786.4,
        "models": {
            "vaegan": {
                "score": "l1",
                "image": image,
                "training": {"seconds": 139.24, "epochs": 15},
                "images_per_second": 1198.24,
            }
        },
        "references": {
            "fusion": {
                "kind": "fusion",
                "auroc": 0.7,
                "auroc_ci": [0.6, 0.8],
                "ap": 0.7,
                "ap_ci": [0.6, 0.8],
            },
        },
    }


def test_blocks_are_regenerated_from_their_sources(updater: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps(_results()))
    (tmp_path / "table.md").write_text("| a | b |\n|---|---|\n| 1 | 2 |\n")
    readme = (
        "intro\n<!-- generated from results.json -->\nstale\n<!-- end generated -->\n"
        "middle\n<!-- generated from table.md -->\n<!-- end generated -->\n"
        "<!-- generated from gone.json -->\nkept\n<!-- end generated -->\n"
    )
    text, changed, missing = updater.update(readme, tmp_path)
    assert changed == ["results.json", "table.md"] and missing == ["gone.json"]
    assert "Wall-clock: **13 min 6 s**" in text
    assert "| vaegan | l1 | 0.812 [0.770, 0.850] |" in text
    assert "| 139 |" in text and "139.24" not in text  # seconds as whole numbers
    assert "| fusion | mean z |" in text and "fusion (fusion)" not in text
    assert "| 1 | 2 |\n<!-- end generated -->" in text
    assert "stale" not in text and "kept" in text and text.startswith("intro\n")
    again, changed_again, _ = updater.update(text, tmp_path)
    assert again == text and changed_again == []


def test_check_reports_a_stale_block_and_writes_nothing(
    updater: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "table.md").write_text("new\n")
    readme = tmp_path / "README.md"
    original = "<!-- generated from table.md -->\nold\n<!-- end generated -->\n"
    readme.write_text(original)
    assert updater.main(["--readme", str(readme), "--check"]) == 1
    assert "table.md" in capsys.readouterr().out
    assert readme.read_text() == original
    assert updater.main(["--readme", str(readme)]) == 0
    assert updater.main(["--readme", str(readme), "--check"]) == 0
