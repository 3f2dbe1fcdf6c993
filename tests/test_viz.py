"""Figures: valid PNGs, the red overlay's colours, the comparison grid, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from cxr_anomaly.reporting import viz


def _png(path: Path) -> np.ndarray:
    """Open ``path``, check it is a PNG, return its RGB pixels as uint8."""
    with Image.open(path) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB"))


def _only_file(folder: Path) -> Path:
    """The folder holds exactly one file (no temporary file left behind)."""
    files = sorted(folder.iterdir())
    assert len(files) == 1, files
    return files[0]


def _roc_data(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(100, int), np.ones(80, int)]
    return {
        "VAE-GAN": (labels, rng.normal(size=180) + 1.0 * labels),
        "BiGAN": (labels, rng.normal(size=180) + 0.4 * labels),
        "AnoDDPM (simplex)": (labels, rng.normal(size=180) + 1.2 * labels),
    }


def _yellow(rgb: np.ndarray) -> int:
    return int(((rgb[..., 0] > 200) & (rgb[..., 1] > 190) & (rgb[..., 2] < 90)).sum())


def _red(rgb: np.ndarray) -> int:
    return int(((rgb[..., 0] > 180) & (rgb[..., 1] < 90) & (rgb[..., 2] < 90)).sum())


def test_plot_roc_writes_a_png(tmp_path: Path) -> None:
    out = viz.plot_roc(_roc_data(), tmp_path / "roc.png")
    assert out == tmp_path / "roc.png"
    assert _only_file(tmp_path) == out
    rgb = _png(out)
    height, width = rgb.shape[:2]
    assert 700 < width < 1300 and 600 < height < 1200
    # Coloured curves are drawn (not just axes): plenty of saturated pixels.
    saturation = rgb.max(axis=2).astype(int) - rgb.min(axis=2)
    assert (saturation > 100).sum() > 2000


def test_plot_roc_other_format_and_empty(tmp_path: Path) -> None:
    pdf = viz.plot_roc(_roc_data(), tmp_path / "sub" / "roc.pdf", title="")
    assert pdf.read_bytes().startswith(b"%PDF")
    with pytest.raises(ValueError, match="at least one"):
        viz.plot_roc({}, tmp_path / "x.png")


def test_red_overlay_red_where_high_grey_where_zero() -> None:
    image = np.full((16, 16), 0.5)
    amap = np.zeros((16, 16))
    amap[4:8, 4:8] = 2.0
    out = viz.red_heatmap_overlay(image, amap, vmax=1.0, alpha=0.8)
    assert out.shape == (16, 16, 3)
    assert out.min() >= 0.0 and out.max() <= 1.0
    # Map 0: the plain grey image.
    np.testing.assert_allclose(out[0, 0], [0.5, 0.5, 0.5])
    # Map >= vmax: 0.2 * grey + 0.8 * red = (0.9, 0.1, 0.1).
    np.testing.assert_allclose(out[5, 5], [0.9, 0.1, 0.1])
    # Half of vmax: half the opacity.
    amap[0, 0] = 0.5
    half = viz.red_heatmap_overlay(image, amap, vmax=1.0, alpha=0.8)[0, 0]
    np.testing.assert_allclose(half, [0.6 * 0.5 + 0.4, 0.6 * 0.5, 0.6 * 0.5])


def test_red_overlay_default_vmax_and_negative_maps() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((32, 32))
    amap = rng.random((32, 32))
    out = viz.red_heatmap_overlay(image, amap)
    # Default vmax = the 99.5th percentile: the top 0.5% of the map is at full opacity.
    top = amap >= np.percentile(amap, 99.5)
    np.testing.assert_allclose(out[top][:, 1], 0.2 * image[top])
    # A negative or all-zero map leaves the image grey.
    grey = viz.red_heatmap_overlay(image, -amap)
    np.testing.assert_allclose(grey, np.repeat(image[..., None], 3, axis=2))
    np.testing.assert_allclose(viz.red_heatmap_overlay(image, np.zeros_like(image))[..., 0], image)


def test_red_overlay_validation() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        viz.red_heatmap_overlay(np.zeros((8, 8)), np.zeros((8, 9)))
    with pytest.raises(ValueError, match="alpha"):
        viz.red_heatmap_overlay(np.zeros((8, 8)), np.zeros((8, 8)), alpha=2.0)


def _grid_inputs(k: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(k)
    originals = 0.3 + 0.4 * rng.random((k, 32, 32))
    masks = np.zeros((k, 32, 32), bool)
    masks[:, 8:16, 10:20] = True
    return originals, masks


def test_comparison_grid_with_missing_reconstruction_masks_and_boxes(tmp_path: Path) -> None:
    originals, masks = _grid_inputs(3)
    hot = masks * 1.0
    out = viz.comparison_grid(
        originals,
        reconstructions={"BiGAN": originals * 0.9, "VAE-GAN": originals[:, None]},
        maps={"BiGAN": hot, "VAE-GAN": hot * 0.5, "Detector": hot[:, None]},
        path=tmp_path / "grid.png",
        masks=masks,
        boxes=[[], [(10, 8, 10, 8)], [(2, 2, 5, 5), (20, 20, 6, 6)]],
        titles=["normal", "opacity (score 0.31)", "<two boxes>"],
        vmax={"BiGAN": 1.0},
    )
    assert _only_file(tmp_path) == out
    rgb = _png(out)
    assert _yellow(rgb) > 50  # mask contours and boxes
    assert _red(rgb) > 500  # heat on the lesions
    # One image per pair of rows: a taller figure for more images.
    one = viz.comparison_grid(
        originals[:1], {}, {"Detector": hot[:1]}, tmp_path / "one" / "grid.png"
    )
    small = _png(one)
    assert small.shape[0] < rgb.shape[0] / 2
    # Without any mask or box there is nothing yellow.
    assert _yellow(small) == 0


def test_comparison_grid_validation(tmp_path: Path) -> None:
    originals, _ = _grid_inputs(2)
    with pytest.raises(ValueError, match="without maps"):
        viz.comparison_grid(originals, {"X": originals}, {"Y": originals}, tmp_path / "g.png")
    with pytest.raises(ValueError, match="shape"):
        viz.comparison_grid(originals, {}, {"Y": originals[:, :10]}, tmp_path / "g.png")
    with pytest.raises(ValueError, match="boxes"):
        viz.comparison_grid(originals, {}, {"Y": originals}, tmp_path / "g.png", boxes=[[]])
    assert not list(tmp_path.iterdir())


def test_score_histograms_writes_a_png(tmp_path: Path) -> None:
    data = _roc_data()
    data["Detector"] = data["BiGAN"]
    out = viz.score_histograms(data, tmp_path / "hist.png")
    assert _only_file(tmp_path) == out
    rgb = _png(out)
    assert rgb.shape[1] > rgb.shape[0]  # 2x2 panels, wider than tall
    with pytest.raises(ValueError, match="NaN"):
        viz.score_histograms({"m": ([0, 1], [0.1, np.nan])}, tmp_path / "bad.png")


def test_failed_save_leaves_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "roc.png"
    viz.plot_roc(_roc_data(), target)
    before = target.read_bytes()

    def broken_savefig(self: Figure, fname: object, **kwargs: object) -> None:
        assert hasattr(fname, "write")
        fname.write(b"half a png")
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        viz.plot_roc(_roc_data(1), target)
    assert _only_file(tmp_path) == target
    assert target.read_bytes() == before


def test_every_roc_curve_looks_different_past_the_palette() -> None:
    styles = [viz.curve_style(i) for i in range(4 * len(viz.PALETTE))]
    assert len(set(styles)) == len(styles)
    curves = {f"model {i}": _roc_data(1)["BiGAN"] for i in range(10)}
    fig = viz.roc_figure(curves)
    lines = fig.axes[0].get_lines()[1:]  # after the chance diagonal
    assert len({(line.get_color(), line.get_linestyle()) for line in lines}) == 10


def test_a_long_roc_title_stays_inside_the_figure() -> None:
    title = "ROC: folder: zhanglab-cxr, the official test split of a dataset with a long name"
    fig = viz.roc_figure(_roc_data(), title=title)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    (suptitle,) = fig.texts
    box = suptitle.get_window_extent(canvas.get_renderer())
    frame = fig.bbox
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1


def test_panel_grid_draws_panels_of_any_aspect_and_checks_its_rows(tmp_path: Path) -> None:
    tall, wide = np.zeros((90, 60, 3)), np.ones((40, 80, 3))
    path = viz.panel_grid([[tall, wide], [wide, tall]], ["a", "b"], tmp_path / "g.png", ["x", "y"])
    assert path.is_file() and path.stat().st_size > 0
    with pytest.raises(ValueError, match="one panel per column"):
        viz.panel_grid([[tall]], ["a", "b"], tmp_path / "bad.png")
