"""The HTML report of a study: one self-contained file, built from small HTML snippets.

Every building block returns an HTML string with all text escaped; :func:`write_report` puts
sections together in one file with inline CSS and the images embedded as base64 data URIs, so the
report opens from anywhere with no server and no neighbouring files. The file is written
atomically.

Cell-formatting convention (:func:`format_value`, used by tables and key-value lists):
    * ``None`` -> "—"; ``bool`` -> "yes" / "no"; integers as they are.
    * floats -> 3 decimals (``digits``); NaN -> "n/a"; infinities -> "inf" / "-inf".
    * a value with an interval, written ``(point, (lo, hi))`` with three numbers ->
      ``"0.812 [0.771, 0.850]"``.
    * any other list or tuple -> its items formatted and bracketed, ``"[64, 64]"``.
    * anything else -> ``str(value)``.

Example:
    >>> from pathlib import Path
    >>> html = table_html([{"model": "VAE-GAN", "AUROC": (0.8123, (0.7712, 0.8504))}])
    >>> "0.812 [0.771, 0.850]" in html
    True
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np

from cxr_anomaly.core import atomic
from cxr_anomaly.reporting.results import (
    FIGURES,
    ORIGINALS_FIGURE,
    ResultsJson,
    curve_label,
)

logger = logging.getLogger(__name__)

__all__ = [
    "Section",
    "format_value",
    "image_html",
    "json_html",
    "key_value_html",
    "paragraph_html",
    "table_html",
    "write_report",
]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 1100px; margin: 2em auto; padding: 0 1.2em; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { font-size: 1.3em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.8em; }
nav ol { margin: 0.3em 0 1em; padding-left: 1.4em; }
a { color: #0b5cad; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.93em; }
caption { text-align: left; font-weight: 600; padding: 0.3em 0; }
th, td { border: 1px solid #d6d6d6; padding: 0.3em 0.65em; vertical-align: top; }
thead th { background: #eef2f7; text-align: left; }
tbody tr:nth-child(even) { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.kv th { background: #f4f4f4; text-align: left; font-weight: 600; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e2e2e2; }
figcaption { color: #555; font-size: 0.9em; margin-top: 0.3em; }
details { margin: 0.8em 0; }
summary { cursor: pointer; color: #0b5cad; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
""".strip()


@dataclass
class Section:
    """One report section.

    Attributes:
        heading: plain text (escaped when written).
        html: the body, already HTML (build it with the helpers of this module).
    """

    heading: str
    html: str


def _is_number(value: Any) -> bool:
    return isinstance(value, Real | np.floating | np.integer) and not isinstance(
        value, bool | np.bool_
    )


def _format_number(value: Any, digits: int) -> str:
    if isinstance(value, Integral | np.integer):
        return str(int(value))
    v = float(value)
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}f}"


def _is_interval_value(value: Any) -> bool:
    """True for ``(point, (lo, hi))`` with three numbers."""
    return (
        isinstance(value, tuple | list)
        and len(value) == 2
        and _is_number(value[0])
        and isinstance(value[1], tuple | list | np.ndarray)
        and len(value[1]) == 2
        and all(_is_number(v) for v in value[1])
    )


def format_value(value: Any, digits: int = 3) -> str:
    """Format one value as plain (unescaped) text, following the module's convention.

    Example:
        >>> format_value((0.8123, (0.7712, 0.8504)))
        '0.812 [0.771, 0.850]'
        >>> format_value([64, 64])
        '[64, 64]'
    """
    if value is None:
        return "—"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if _is_number(value):
        return _format_number(value, digits)
    if _is_interval_value(value):
        point, (lo, hi) = value
        return (
            f"{_format_number(point, digits)} "
            f"[{_format_number(lo, digits)}, {_format_number(hi, digits)}]"
        )
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    if isinstance(value, tuple | list):
        return "[" + ", ".join(format_value(v, digits) for v in value) + "]"
    return str(value)


def _cell_class(value: Any) -> str:
    return ' class="num"' if _is_number(value) or _is_interval_value(value) else ""


def table_html(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    caption: str | None = None,
    digits: int = 3,
) -> str:
    """An HTML table, one row per mapping.

    Args:
        rows: the rows; a missing key shows as "—".
        columns: the columns in order; default every key, in first-seen order.
        caption: an optional caption.
        digits: decimals for floats (see :func:`format_value`).

    Returns:
        ``<table>...</table>`` with every header and cell escaped; numeric cells right-aligned.
    """
    if columns is None:
        seen: dict[str, None] = {}
        for row in rows:
            for key in row:
                seen.setdefault(str(key), None)
        columns = list(seen)
    parts = ["<table>"]
    if caption:
        parts.append(f"<caption>{html.escape(caption)}</caption>")
    parts.append(
        "<thead><tr>"
        + "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
        + "</tr></thead>"
    )
    parts.append("<tbody>")
    for row in rows:
        cells = []
        for col in columns:
            value = row.get(col)
            text = html.escape(format_value(value, digits))
            cells.append(f"<td{_cell_class(value)}>{text}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    return "\n".join(parts)


def key_value_html(mapping: Mapping[str, Any], digits: int = 3) -> str:
    """A two-column table of keys and formatted values (escaped)."""
    rows = "\n".join(
        f"<tr><th>{html.escape(str(k))}</th>"
        f"<td{_cell_class(v)}>{html.escape(format_value(v, digits))}</td></tr>"
        for k, v in mapping.items()
    )
    return f'<table class="kv"><tbody>\n{rows}\n</tbody></table>'


def paragraph_html(text: str) -> str:
    """A paragraph of plain text (escaped)."""
    return f"<p>{html.escape(text)}</p>"


def image_html(png_path: Path | str, alt: str, caption: str | None = None) -> str:
    """An image embedded as a base64 data URI (the report needs no neighbouring files).

    Args:
        png_path: a PNG (or JPEG) file.
        alt: alternative text.
        caption: optional caption below the image.

    Raises:
        FileNotFoundError: when the file is missing.
        ValueError: when the file is neither PNG nor JPEG.
    """
    data = Path(png_path).read_bytes()
    if data.startswith(_PNG_MAGIC):
        mime = "image/png"
    elif data.startswith(_JPEG_MAGIC):
        mime = "image/jpeg"
    else:
        raise ValueError(f"{png_path} is not a PNG or JPEG file")
    b64 = base64.b64encode(data).decode("ascii")
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return (
        f'<figure><img src="data:{mime};base64,{b64}" alt="{html.escape(alt, quote=True)}">'
        f"{cap}</figure>"
    )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        to_dict = getattr(obj, "to_dict", None)
        return to_dict() if callable(to_dict) else dataclasses.asdict(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=str)
    return str(obj)


def json_html(obj: Any, summary: str = "JSON") -> str:
    """``obj`` pretty-printed as JSON in a collapsible ``<details><pre>`` (escaped).

    numpy scalars and arrays, paths, sets and dataclasses are converted; anything else falls back
    to ``str``.
    """
    text = json.dumps(obj, indent=2, default=_json_default, ensure_ascii=False)
    return (
        f"<details><summary>{html.escape(summary)}</summary>"
        f"<pre>{html.escape(text)}</pre></details>"
    )


def _slug(text: str, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    slug, i = base, 2
    while slug in used:
        slug, i = f"{base}-{i}", i + 1
    used.add(slug)
    return slug


# After loading, the page records how many of its figures decoded (body data attributes), so a
# headless browser can check the report is whole without a server.
_IMAGE_CHECK = """window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (img) { return img.complete && img.naturalWidth > 0; });
  document.body.dataset.imagesTotal = String(images.length);
  document.body.dataset.imagesLoaded = String(loaded.length);
});"""


def render_report(*, title: str, sections: Sequence[Section]) -> str:
    """The full HTML document as a string (see :func:`write_report`)."""
    used: set[str] = set()
    slugs = [_slug(s.heading, used) for s in sections]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>\n{_CSS}\n</style>",
        "</head>",
        "<body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if len(sections) > 1:
        items = "".join(
            f'<li><a href="#{slug}">{html.escape(s.heading)}</a></li>'
            for slug, s in zip(slugs, sections, strict=True)
        )
        parts.append(f"<nav><ol>{items}</ol></nav>")
    for slug, section in zip(slugs, sections, strict=True):
        parts.append(f'<section id="{slug}">')
        parts.append(f"<h2>{html.escape(section.heading)}</h2>")
        parts.append(section.html)
        parts.append("</section>")
    parts += [f"<script>\n{_IMAGE_CHECK}\n</script>", "</body>", "</html>", ""]
    return "\n".join(parts)


def write_report(path: Path | str, *, title: str, sections: Sequence[Section]) -> Path:
    """Write one self-contained HTML report, atomically.

    Args:
        path: the output ``.html`` file (parent folders are created).
        title: the page title and top heading (escaped).
        sections: the sections in order; a table of contents is added when there are several.

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_report(title=title, sections=sections)
    atomic.write_text(path, text)
    logger.info("wrote report %s (%d sections)", path, len(sections))
    return path


# -- the study report ---------------------------------------------------------------------------

REPORT_FILE = "report.html"


def metrics_rows(results_json: ResultsJson) -> list[dict[str, object]]:
    """One row per model, trivial detector and fusion: AUROC, AP with CIs, sensitivities."""
    rows: list[dict[str, object]] = []
    for name, entry in results_json["models"].items():
        image = entry["image"]
        rows.append(
            {
                "model": name,
                "score": entry["score"],
                "AUROC [95% CI]": (image["auroc"], tuple(image["auroc_ci"])),
                "AP [95% CI]": (image["ap"], tuple(image["ap_ci"])),
                "sens@90%spec": image["sens_at_90spec"],
                "sens@95%spec": image["sens_at_95spec"],
                "train s": whole(entry["training"]["seconds"]),
                "epochs": entry["training"]["epochs"],
                "score img/s": whole(entry["images_per_second"]),
            }
        )
    for name, reference in results_json["references"].items():
        rows.append(
            {
                "model": curve_label(name, reference),
                "score": "mean z" if reference["kind"] == "fusion" else name,
                "AUROC [95% CI]": (reference["auroc"], tuple(reference["auroc_ci"])),
                "AP [95% CI]": (reference["ap"], tuple(reference["ap_ci"])),
            }
        )
    return rows


def whole(value: float | None) -> int | None:
    """Seconds and throughputs as whole numbers: their decimals are timing noise."""
    return None if value is None else round(value)


def text_table(results_json: ResultsJson) -> str:
    """The metrics table as plain text (the CLI prints it)."""
    rows = metrics_rows(results_json)
    columns = ["model", "score", "AUROC [95% CI]", "AP [95% CI]", "sens@90%spec", "train s"]
    cells = [[format_value(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def study_sections(results_json: ResultsJson, figures: Path) -> list[Section]:
    """The sections of a study's report, from its ``results.json`` and figures folder."""
    split_rows = [
        {"split": split, "class": cls, **counts}
        for split, classes in results_json["split_summary"].items()
        for cls, counts in classes.items()
    ]
    protocol = results_json["protocol"]
    size = results_json["image_size"]
    overview = key_value_html(
        {
            "data": results_json["data"],
            "protocol": f"{protocol['name']}: {protocol['description']}",
            "evaluated split": results_json["split"],
            "image size": f"{size} x {size}",
            "preset": results_json["preset"] or "—",
            "command": results_json["command"],
        }
    ) + "".join(paragraph_html(note) for note in results_json["notes"])
    sections = [
        Section("Data and protocol", overview + table_html(split_rows)),
        Section(
            "Image-level detection",
            table_html(
                metrics_rows(results_json),
                caption="AUROC and AP with 95% bootstrap intervals resampled by patient",
            )
            + image_html(figures / FIGURES["roc"], "ROC curves")
            + image_html(figures / FIGURES["histograms"], "score histograms"),
        ),
    ]
    if (figures / FIGURES["grid"]).is_file():
        sections.append(
            Section(
                "Reconstructions and heatmaps",
                paragraph_html(
                    "Top rows: each model's reconstruction. Bottom rows: the absolute difference "
                    "drawn in red over the image; ground-truth masks outlined in yellow. "
                    "Examples chosen by seed, not by score."
                )
                + image_html(figures / FIGURES["grid"], "comparison grid"),
            )
        )
    if (figures / ORIGINALS_FIGURE).is_file():
        sections.append(
            Section(
                "Heatmaps on the radiographs",
                paragraph_html(
                    "The same examples as read from their files, at their own resolution and "
                    "intensities, each model's map placed as preprocessing placed the image: no "
                    "red at the median normal pixel, full red at the 99.5th percentile of normal "
                    "pixels. Known boxes in yellow."
                )
                + image_html(figures / ORIGINALS_FIGURE, "heatmaps on the radiographs"),
            )
        )
    models = results_json["models"]
    per_class = [{"model": name, **entry["image"]["per_class"]} for name, entry in models.items()]
    variants = [
        {"model": name, "score": score, **values}
        for name, entry in models.items()
        for score, values in entry["score_variants"].items()
    ]
    pixel = [{"model": name, **entry["pixel"]} for name, entry in models.items() if entry["pixel"]]
    fusions = [
        {
            "fusion": name,
            "members": reference.get("members", ""),
            "rule": reference.get("rule", ""),
            "AUROC": reference["auroc"],
        }
        for name, reference in results_json["references"].items()
        if reference["kind"] == "fusion"
    ]
    sections.append(
        Section(
            "Per class and per score",
            table_html(per_class, caption="AUROC of each abnormal class vs all normals")
            + table_html(variants, caption="Every score each model offers")
            + (table_html(fusions, caption="Fusions of z-normalised scores") if fusions else ""),
        )
    )
    if pixel:
        sections.append(
            Section(
                "Localization",
                table_html(
                    pixel,
                    caption="Pixel AUROC/AP pooled over the split (normal images as all-zero "
                    "masks), best Dice over thresholds, pointing game",
                ),
            )
        )
    timing = [
        {
            "model": name,
            **{
                key: whole(entry["training"]["seconds"]) if key == "seconds" else value
                for key, value in entry["training"].items()
            },
            "scoring s": whole(entry["scoring_seconds"]),
            "score img/s": whole(entry["images_per_second"]),
        }
        for name, entry in models.items()
    ]
    sections.append(
        Section(
            "Configuration and environment",
            table_html(timing, caption="Training and scoring")
            + "".join(json_html(e["config"], f"config: {n}") for n, e in models.items())
            + json_html(results_json["versions"], "library versions")
            + json_html(results_json["machine"], "machine"),
        )
    )
    return sections


def write_study_report(out_dir: Path, results_json: ResultsJson) -> Path:
    """``report.html`` of the study written in ``out_dir`` (see
    :mod:`cxr_anomaly.reporting.results`).
    """
    sections = study_sections(results_json, out_dir / "figures")
    return write_report(out_dir / REPORT_FILE, title=results_json["title"], sections=sections)
