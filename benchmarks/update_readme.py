"""Regenerate the result tables of the README and ``docs/results.md`` (and the demo figures)
from results files.

No number in a generated block is typed by hand. A block sits between two markers naming its
source, relative to the repository root:

    <!-- generated from runs/demo/results.json -->
    ...replaced on every run...
    <!-- end generated -->

A ``results.json`` (written by ``demo``, ``benchmark`` or ``evaluate``) becomes its wall-clock
time and metrics table; a ``.md`` file (the summaries ``benchmarks/`` write) is included as it
is. A block whose source is missing is left as it is, with a warning. ``--figures RUN`` also
copies the ROC figure and comparison grid of RUN to ``docs/demo_roc.png`` and
``docs/demo_grid.png``.

    make demo && .venv/bin/python benchmarks/update_readme.py --figures runs/demo
    .venv/bin/python benchmarks/update_readme.py --check      # exit 1 if a block is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from cxr_anomaly.reporting.html import format_value, metrics_rows
from cxr_anomaly.reporting.results import ResultsJson

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(
    r"(?P<start><!-- generated from (?P<source>[^ ]+) -->\n)"
    r"(?P<body>.*?)(?P<end><!-- end generated -->)",
    re.DOTALL,
)
DOCUMENTS = (ROOT / "README.md", ROOT / "docs" / "results.md")
FIGURES = {"roc.png": "demo_roc.png", "comparison_grid.png": "demo_grid.png"}


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def markdown_table(results_json: ResultsJson) -> str:
    """The metrics table of a ``results.json`` as Markdown."""
    columns = ["model", "score", "AUROC [95% CI]", "AP [95% CI]", "sens@90%spec", "train s"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in metrics_rows(results_json):
        lines.append("| " + " | ".join(format_value(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def render_results(results: ResultsJson) -> str:
    """A ``results.json`` as Markdown: its wall-clock time (if recorded) and metrics table."""
    lines = []
    wall = results.get("wall_seconds")
    if isinstance(wall, int | float):
        lines.append(
            f"Wall-clock: **{_duration(wall)}** (data, training, scoring and calibration of "
            f"every model; `{results.get('command', '')}`).\n"
        )
    lines.append(markdown_table(results))
    return "\n".join(lines)


def render(source: Path) -> str:
    """The Markdown a block of ``source`` holds."""
    if source.suffix == ".json":
        return render_results(json.loads(source.read_text()))
    return source.read_text().strip()


def update(text: str, root: Path = ROOT) -> tuple[str, list[str], list[str]]:
    """``text`` with every block regenerated; the sources changed and those missing."""
    changed: list[str] = []
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match["source"]
        source = root / name
        if not source.is_file():
            missing.append(name)
            return match[0]
        body = render(source).rstrip("\n") + "\n"
        if body != match["body"]:
            changed.append(name)
        return f"{match['start']}{body}{match['end']}"

    return BLOCK.sub(replace, text), changed, missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--readme",
        action="append",
        help="a Markdown file to update (repeatable; default README.md and docs/results.md)",
    )
    parser.add_argument("--figures", help="a demo/benchmark output folder to copy figures from")
    parser.add_argument("--check", action="store_true", help="only report out-of-date blocks")
    args = parser.parse_args(argv)
    documents = [Path(p) for p in args.readme or DOCUMENTS]
    stale = False
    for document in documents:
        # Sources are named relative to the repository root (a file elsewhere: to its folder).
        resolved = document.resolve()
        root = ROOT if resolved.is_relative_to(ROOT) else resolved.parent
        text, changed, missing = update(document.read_text(), root)
        for name in missing:
            print(f"warning: {name} not found; its block is left as it is", file=sys.stderr)
        if args.check:
            for name in changed:
                print(f"out of date: {document}: the block generated from {name}")
            stale = stale or bool(changed)
            continue
        document.write_text(text)
        print(f"{document}: {len(changed)} block(s) regenerated")
    if args.check:
        return 1 if stale else 0
    if args.figures:
        figures = Path(args.figures) / "figures"
        for source, target in FIGURES.items():
            shutil.copyfile(figures / source, ROOT / "docs" / target)
            print(f"copied {figures / source} to docs/{target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
