"""benchmarks/headline.py pools the seeds of several ablation summaries exactly, and refuses
summaries that were not measured alike."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from benchmark_scripts import load_benchmark

PROTOCOL = {"data": "folder: x", "protocol": "official", "split": "val", "split_note": "n"}


@pytest.fixture(scope="module")
def headline() -> ModuleType:
    return load_benchmark("headline")


def _summary(seeds: list[int], aurocs: list[float], size: int = 64) -> dict[str, Any]:
    """A summary as benchmarks/ablation.py writes it, for one variant scoring ``l1`` and
    ``lowpass`` (``lowpass`` is each AUROC minus 0.1)."""

    def stats(values: list[float]) -> list[float]:
        return [statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0]

    scores = {
        name: {
            "auroc": stats([a - shift for a in aurocs]),
            "ap": stats([a - shift + 0.05 for a in aurocs]),
            "auroc_ci_first_seed": [aurocs[0] - shift - 0.04, aurocs[0] - shift + 0.03],
        }
        for name, shift in (("l1", 0.0), ("lowpass", 0.1))
    }
    variant = {
        "default_score": "l1",
        "scores": scores,
        "auroc_ci_seed0": scores["l1"]["auroc_ci_first_seed"],
        "train_seconds": [100.0 * len(seeds), 1.0],
        "robustness": [0.05, 0.0],
    }
    trivial = {"auroc": 0.8, "auroc_ci": [0.75, 0.85], "ap": 0.82}
    return {
        **PROTOCOL,
        "size": size,
        "seeds": seeds,
        "variants": {"m": variant},
        "fusions": {},
        "trivial": {"intensity": "none", "entries": {"sharpness": trivial}},
    }


def test_seeds_of_two_summaries_pool_to_the_statistics_of_all_of_them(
    headline: ModuleType,
) -> None:
    aurocs = [0.91, 0.905, 0.93]
    summaries = {"a.json": _summary([0, 1], aurocs[:2]), "b.json": _summary([2], aurocs[2:])}
    spec = {"label": "m", "sources": [{"file": f, "variant": "m"} for f in summaries]}
    row = headline.build_row(spec, summaries)
    assert row.seeds == (0, 1, 2)
    assert row.score == "l1"
    assert row.auroc == pytest.approx((statistics.fmean(aurocs), statistics.stdev(aurocs)))
    assert row.ap[0] == pytest.approx(statistics.fmean(aurocs) + 0.05)
    assert row.seed0_ci == pytest.approx((0.87, 0.94))  # seed 0's, from the first summary
    # Training time: the mean over the three seeds (200 s for each of a's two, 100 s for b's).
    assert row.train_seconds == pytest.approx(500 / 3)

    lowpass = headline.build_row({**spec, "score": "lowpass"}, summaries)
    assert lowpass.auroc[0] == pytest.approx(statistics.fmean(aurocs) - 0.1)
    assert lowpass.seed0_ci == pytest.approx((0.77, 0.84))


def test_a_seed_in_two_summaries_is_refused(headline: ModuleType) -> None:
    summaries = {"a.json": _summary([0, 1], [0.9, 0.8]), "b.json": _summary([1], [0.7])}
    spec = {"label": "m", "sources": [{"file": f, "variant": "m"} for f in summaries]}
    with pytest.raises(ValueError, match="more than one summary"):
        headline.build_row(spec, summaries)


def test_summaries_of_another_protocol_are_refused(headline: ModuleType) -> None:
    summaries = {"a.json": _summary([0], [0.9]), "b.json": _summary([1], [0.8], size=128)}
    with pytest.raises(ValueError, match=r"b\.json differs from a\.json in size"):
        headline.check_same_protocol(summaries)


def test_the_table_names_every_row_and_its_source(headline: ModuleType, tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "a.json").write_text(json.dumps(_summary([0, 1], [0.9, 0.8])))
    rows = [
        {"label": "model m", "sources": [{"file": str(results / "a.json"), "variant": "m"}]},
        {"label": "sharp", "sources": [{"file": str(results / "a.json"), "trivial": "sharpness"}]},
    ]
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({"rows": rows}))
    out = tmp_path / "headline"
    assert headline.main([f"--spec={tmp_path / 'spec.yaml'}", f"--out={out}"]) == 0
    table = out.with_suffix(".md").read_text()
    assert "| model m |  | l1 | 0.850 ± 0.071 | 0, 1 | [0.860, 0.930] |" in table
    trivial = "| sharp |  | sharpness | 0.800 | — | [0.750, 0.850] | 0.820 | — | — | `a.json` |"
    assert trivial in table
    payload = json.loads(out.with_suffix(".json").read_text())
    assert [row["label"] for row in payload["rows"]] == ["model m", "sharp"]
