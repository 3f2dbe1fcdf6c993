"""HTML report: one self-contained file, embedded PNGs, escaped text, the number convention."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_anomaly.reporting import html as report
from cxr_anomaly.reporting.html import Section


def _write_png(path: Path, colour: tuple[int, int, int] = (200, 30, 30)) -> Path:
    Image.new("RGB", (12, 8), colour).save(path, format="PNG")
    return path


def test_report_is_one_self_contained_escaped_file(tmp_path: Path) -> None:
    figures = tmp_path / "figures"
    figures.mkdir()
    roc = _write_png(figures / "roc.png")
    grid = _write_png(figures / "grid.png", (10, 200, 10))
    rows = [
        {"model": "VAE-GAN", "AUROC": (0.8123, (0.7712, 0.8504)), "n": 412},
        {"model": "<script>alert(1)</script>", "AUROC": (0.5, (0.45, 0.55)), "n": 3},
    ]
    sections = [
        Section("Image-level results", report.table_html(rows, caption="Test set <RSNA>")),
        Section("Figures", report.image_html(roc, "ROC") + report.image_html(grid, "grid", "G")),
        Section("Config", report.json_html({"note": "</pre><b>x</b>", "size": np.int64(64)})),
        Section("Run", report.key_value_html({"seed": 0, "device": "cpu & <gpu>"})),
    ]
    out_dir = tmp_path / "out"
    out = report.write_report(out_dir / "report.html", title="A & B <report>", sections=sections)
    assert sorted(out_dir.iterdir()) == [out]  # one file, no temporary left

    # Moving the figures away changes nothing: the report needs no neighbouring files.
    for f in figures.iterdir():
        f.unlink()
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "<title>A &amp; B &lt;report&gt;</title>" in text

    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(uris) == 2
    colours = []
    for uri in uris:
        data = base64.b64decode(uri, validate=True)
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(data)) as img:
            assert img.format == "PNG" and img.size == (12, 8)
            colours.append(img.convert("RGB").getpixel((0, 0)))
    assert colours == [(200, 30, 30), (10, 200, 10)]
    # Only remote-free sources: no file paths, no http(s) references in src attributes.
    assert re.findall(r'src="(?!data:)', text) == []

    # Escaping.
    assert "<script>alert(1)" not in text  # the page's own image-check script is the only one
    assert text.count("<script>") == 1
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "Test set &lt;RSNA&gt;" in text
    assert "<b>x</b>" not in text and "&lt;/pre&gt;&lt;b&gt;x&lt;/b&gt;" in text
    assert "cpu &amp; &lt;gpu&gt;" in text
    # The CI convention in the table.
    assert "0.812 [0.771, 0.850]" in text
    # A table of contents links to every section.
    for anchor in ("image-level-results", "figures", "config", "run"):
        assert f'href="#{anchor}"' in text and f'id="{anchor}"' in text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ((0.8123, (0.7712, 0.8504)), "0.812 [0.771, 0.850]"),
        ((np.float32(0.5), np.array([0.25, 0.75])), "0.500 [0.250, 0.750]"),
        ([0.8123, [0.7712, 0.8504]], "0.812 [0.771, 0.850]"),
        (0.1, "0.100"),
        (np.float64(1 / 3), "0.333"),
        (412, "412"),
        (np.int64(7), "7"),
        (True, "yes"),
        (None, "—"),
        (float("nan"), "n/a"),
        (float("inf"), "inf"),
        ((0.77, 0.85), "[0.770, 0.850]"),
        ([64, 64], "[64, 64]"),
        (np.array([1.0, 2.0]), "[1.000, 2.000]"),
        ("Lung Opacity", "Lung Opacity"),
    ],
)
def test_format_value_convention(value: object, expected: str) -> None:
    assert report.format_value(value) == expected


def test_format_value_digits() -> None:
    assert report.format_value((0.81234, (0.7, 0.9)), digits=2) == "0.81 [0.70, 0.90]"


def test_table_columns_order_missing_cells_and_alignment() -> None:
    html = report.table_html([{"a": 1, "b": 0.5}, {"c": "x", "a": 2}])
    headers = re.findall(r"<th>(.*?)</th>", html)
    assert headers == ["a", "b", "c"]
    assert html.count("<td>—</td>") == 2  # b of row 2, c of row 1
    assert '<td class="num">0.500</td>' in html
    chosen = report.table_html([{"a": 1, "b": 2}], columns=["b"])
    assert re.findall(r"<th>(.*?)</th>", chosen) == ["b"]
    assert "<td" in chosen and ">1<" not in chosen


def test_image_html_rejects_non_images(tmp_path: Path) -> None:
    bad = tmp_path / "not.png"
    bad.write_text("hello")
    with pytest.raises(ValueError, match="not a PNG"):
        report.image_html(bad, "x")
    with pytest.raises(FileNotFoundError):
        report.image_html(tmp_path / "missing.png", "x")


def test_json_html_is_collapsible_and_handles_numpy(tmp_path: Path) -> None:
    html = report.json_html(
        {"arr": np.arange(3), "path": tmp_path, "x": np.float32(0.5)}, summary="Config"
    )
    assert html.startswith("<details><summary>Config</summary><pre>")
    assert "[\n    0,\n    1,\n    2\n  ]" in html
    assert "&quot;x&quot;: 0.5" in html


def test_write_report_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "r.html"
    report.write_report(path, title="first", sections=[])
    report.write_report(
        path, title="second", sections=[Section("Only", report.paragraph_html("<p>"))]
    )
    assert sorted(tmp_path.iterdir()) == [path]
    text = path.read_text(encoding="utf-8")
    assert "second" in text and "first" not in text
    assert "<nav>" not in text  # no table of contents for a single section
    assert "<p>&lt;p&gt;</p>" in text
