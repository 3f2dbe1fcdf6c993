"""The headline table: every model at its chosen configuration, pooled over the seeds of one or
more ablation summaries.

A long configuration's seeds are often trained by separate calls of ``benchmarks/ablation.py``
(an AnoDDPM seed is one and a half hours of CPU), each writing its own summary. This script
reads the rows that ``benchmarks/headline.yaml`` names (a variant, a fusion or a trivial
detector of one or more summaries), pools their seeds (mean and sample standard deviation from
each summary's count, mean and spread, which is exact), and writes one table as Markdown and
JSON. No number is typed by hand; every row names its summaries. The summaries must share the
data, protocol, split and image size, and a seed may appear in only one of a row's summaries.

    python benchmarks/headline.py            # writes benchmarks/results/headline-*.{md,json}
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from common import portable

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
PROTOCOL_KEYS = ("data", "protocol", "split", "split_note", "size")


@dataclass(frozen=True)
class Group:
    """One summary's share of a row: its seeds and the mean and spread over them."""

    seeds: tuple[int, ...]
    auroc: tuple[float, float]
    ap: tuple[float, float] | None
    train_seconds: float | None
    robustness: float | None
    first_seed_ci: tuple[float, float] | None


@dataclass(frozen=True)
class Row:
    """A pooled row of the headline table."""

    label: str
    configuration: str
    score: str
    seeds: tuple[int, ...]
    auroc: tuple[float, float]
    ap: tuple[float, float] | None
    seed0_ci: tuple[float, float] | None
    train_seconds: float | None
    robustness: float | None
    sources: tuple[str, ...]


def pool(groups: list[tuple[int, float, float]]) -> tuple[float, float]:
    """Mean and sample standard deviation of the union of groups given as (count, mean, sd).

    Example:
        >>> pool([(2, 1.5, math.sqrt(0.5)), (1, 3.0, 0.0)])  # the values 1, 2 and 3
        (2.0, 1.0)
    """
    total = sum(n for n, _, _ in groups)
    mean = sum(n * m for n, m, _ in groups) / total
    if total < 2:
        return mean, 0.0
    squares = sum((n - 1) * sd**2 + n * (m - mean) ** 2 for n, m, sd in groups)
    return mean, math.sqrt(squares / (total - 1))


def _pair(values: Any) -> tuple[float, float]:
    return float(values[0]), float(values[1])


def read_group(summary: dict[str, Any], source: dict[str, Any], score: str | None) -> Group:
    """The share of one summary in a row: a ``variant`` (at ``score``, default: the variant's
    own), a ``fusion`` or a ``trivial`` detector."""
    seeds = tuple(int(s) for s in summary["seeds"])
    if "variant" in source:
        row = summary["variants"][source["variant"]]
        values = row["scores"][score or row["default_score"]]
        ci = values.get("auroc_ci_first_seed")
        if ci is None and (score is None or score == row["default_score"]):
            ci = row["auroc_ci_seed0"]
        robustness = row.get("robustness")
        return Group(
            seeds,
            _pair(values["auroc"]),
            _pair(values["ap"]),
            float(row["train_seconds"][0]),
            None if robustness is None else float(robustness[0]),
            None if ci is None else _pair(ci),
        )
    if "fusion" in source:
        fusion = summary["fusions"][source["fusion"]]
        ci = fusion["auroc_ci_seed0"]
        return Group(seeds, _pair(fusion["auroc"]), _pair(fusion["ap"]), None, None, _pair(ci))
    entry = summary["trivial"]["entries"][source["trivial"]]
    return Group(
        (), (float(entry["auroc"]), 0.0), (float(entry["ap"]), 0.0), None, None,
        _pair(entry["auroc_ci"]),
    )  # fmt: skip


def _pooled_optional(groups: list[Group], pick: str) -> float | None:
    values = [(len(g.seeds) or 1, getattr(g, pick)) for g in groups]
    if any(v is None for _, v in values):
        return None
    return sum(n * v for n, v in values) / sum(n for n, _ in values)


def build_row(spec: dict[str, Any], summaries: dict[str, dict[str, Any]]) -> Row:
    """One row of ``headline.yaml`` pooled over its summaries."""
    groups = [read_group(summaries[s["file"]], s, spec.get("score")) for s in spec["sources"]]
    seeds = [seed for g in groups for seed in g.seeds]
    if len(seeds) != len(set(seeds)):
        raise ValueError(f"{spec['label']}: a seed appears in more than one summary")
    counts = [len(g.seeds) or 1 for g in groups]
    auroc = pool([(n, *g.auroc) for n, g in zip(counts, groups, strict=True)])
    ap = (
        None
        if any(g.ap is None for g in groups)
        else pool([(n, *g.ap) for n, g in zip(counts, groups, strict=True) if g.ap])
    )
    first = next((g for g in groups if not g.seeds or g.seeds[0] == min(seeds or [0])), None)
    return Row(
        label=spec["label"],
        configuration=spec.get("configuration", ""),
        score=spec.get("score") or _default_score(summaries, spec["sources"][0]),
        seeds=tuple(sorted(seeds)),
        auroc=auroc,
        ap=ap,
        seed0_ci=None if first is None else first.first_seed_ci,
        train_seconds=_pooled_optional(groups, "train_seconds"),
        robustness=_pooled_optional(groups, "robustness"),
        sources=tuple(dict.fromkeys(s["file"] for s in spec["sources"])),
    )


def _default_score(summaries: dict[str, dict[str, Any]], source: dict[str, Any]) -> str:
    if "variant" in source:
        return str(summaries[source["file"]]["variants"][source["variant"]]["default_score"])
    return "mean z" if "fusion" in source else source["trivial"]


def check_same_protocol(summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The protocol every summary shares; a ValueError naming the first that differs."""
    files = list(summaries)
    shared = {key: summaries[files[0]][key] for key in PROTOCOL_KEYS}
    for name in files[1:]:
        for key in PROTOCOL_KEYS:
            if summaries[name][key] != shared[key]:
                raise ValueError(f"{name} differs from {files[0]} in {key}")
    return shared


def _mean_sd(values: tuple[float, float], seeds: tuple[int, ...]) -> str:
    return f"{values[0]:.3f}" if len(seeds) < 2 else f"{values[0]:.3f} ± {values[1]:.3f}"


def markdown(protocol: dict[str, Any], rows: list[Row]) -> str:
    """The headline table with its protocol line."""
    lines = [
        f"Data: {portable(str(protocol['data']))}; protocol {protocol['protocol']}; "
        f"split {protocol['split']} "
        f"({protocol['split_note']}); {protocol['size']}x{protocol['size']}.",
        "",
        "| model | configuration | score | AUROC | seeds | seed-0 95% CI | AP | "
        "CPU training (min) | robustness | from |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ci = "—" if row.seed0_ci is None else f"[{row.seed0_ci[0]:.3f}, {row.seed0_ci[1]:.3f}]"
        minutes = "—" if row.train_seconds is None else f"{row.train_seconds / 60:.0f}"
        robust = "—" if row.robustness is None else f"{row.robustness:.3f}"
        ap = "—" if row.ap is None else _mean_sd(row.ap, row.seeds)
        seeds = ", ".join(map(str, row.seeds)) or "—"
        sources = ", ".join(f"`{Path(s).name}`" for s in row.sources)
        lines.append(
            f"| {row.label} | {row.configuration} | {row.score} | "
            f"{_mean_sd(row.auroc, row.seeds)} | {seeds} | {ci} | {ap} | {minutes} | "
            f"{robust} | {sources} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(HERE / "headline.yaml"))
    parser.add_argument("--out", default=str(HERE / "results" / "headline-zhanglab-testdev"))
    args = parser.parse_args(argv)
    spec = yaml.safe_load(Path(args.spec).read_text())
    files = dict.fromkeys(s["file"] for row in spec["rows"] for s in row["sources"])
    summaries = {name: json.loads((ROOT / name).read_text()) for name in files}
    protocol = check_same_protocol(summaries)
    rows = [build_row(row, summaries) for row in spec["rows"]]
    table = markdown(protocol, rows)
    print(table)
    out = Path(args.out)
    out.with_suffix(".md").write_text(table + "\n")
    payload = {"protocol": protocol, "rows": [asdict(row) for row in rows]}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
