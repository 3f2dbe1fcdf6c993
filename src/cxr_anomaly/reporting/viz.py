"""Figures: ROC overlay, reconstruction/heatmap comparison grid, score histograms.

No pyplot global state: every figure is a ``matplotlib.figure.Figure`` rendered with the Agg
canvas, and every file is written atomically (a temporary file in the same folder, then
``os.replace``), so an interrupted run never leaves a half-written image behind.

Conventions:
    * Images are grey, float, in [0, 1] (values outside are clipped), shaped (H, W); stacks are
      (K, H, W) and a singleton channel axis (K, 1, H, W) is accepted.
    * Anomaly maps: larger = more anomalous; drawn in red over the image, scaled by ``vmax``.
    * Boxes are ``(x, y, w, h)`` with ``(x, y)`` the top-left corner, in the pixel frame of the
      displayed image where pixel (row r, column c) covers ``[c, c+1) x [r, r+1)`` (the RSNA box
      convention, rescaled to the displayed size).
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.gridspec import GridSpec
from matplotlib.patches import Rectangle
from numpy.typing import ArrayLike, NDArray
from PIL import Image, ImageDraw, ImageFont

from cxr_anomaly.core import atomic
from cxr_anomaly.evaluation import metrics
from cxr_anomaly.postprocess.maps import MAP_SCALE_PERCENTILE

logger = logging.getLogger(__name__)

__all__ = [
    "PALETTE",
    "comparison_grid",
    "plot_roc",
    "red_heatmap_overlay",
    "save_figure",
    "score_histograms",
]

#: Distinct, colour-blind-safe line colours (Okabe-Ito), assigned to models in the given order.
PALETTE = (
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#000000",  # black
    "#F0E442",  # yellow
)

#: Past the palette's eight colours, curves change line style, so no two curves look alike.
LINE_STYLES = ("-", "--", ":", "-.")
#: Titles wrap at this many characters, so that none runs past a figure's edge.
TITLE_WIDTH = 48

_OUTLINE = "#FFE600"  # yellow for masks and boxes
_NORMAL_COLOUR = "#0072B2"
_ABNORMAL_COLOUR = "#D55E00"


def save_figure(fig: Figure, path: Path | str, dpi: int = 150) -> Path:
    """Render ``fig`` with the Agg canvas and write it atomically to ``path``.

    The format follows the suffix (``.png`` by default; ``.pdf`` and ``.svg`` work too). Parent
    folders are created.

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic.atomic_open(path, "wb") as handle:
        fig.savefig(handle, format=fmt, dpi=dpi)
    logger.info("wrote %s", path)
    return path


def _stack(arr: ArrayLike, name: str) -> NDArray[np.float64]:
    """(K, H, W) float array; a singleton channel axis is dropped."""
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3:
        raise ValueError(f"{name} must be (K, H, W) or (K, 1, H, W), got shape {a.shape}")
    return a


def _plain(arr: ArrayLike, name: str) -> NDArray[np.float64]:
    """(H, W) float array; singleton leading axes are dropped."""
    a = np.asarray(arr, dtype=np.float64)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"{name} must be (H, W), got shape {a.shape}")
    return a


# --------------------------------------------------------------------------------------------
# ROC
# --------------------------------------------------------------------------------------------


def plot_roc(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]],
    path: Path | str,
    title: str = "ROC curves: normal vs abnormal",
) -> Path:
    """All models' ROC curves on one plot, AUROC in the legend.

    Colours follow the order of ``curves`` (so a model keeps its colour across figures); the
    legend lists the models by decreasing AUROC, like the reference figure.

    Args:
        curves: model name -> ``(labels, scores)`` on the same test set.
        path: output file (PNG unless the suffix says otherwise).
        title: the plot title ("" for none).

    Returns:
        ``path``.
    """
    return save_figure(roc_figure(curves, title), path)


def roc_figure(curves: Mapping[str, tuple[ArrayLike, ArrayLike]], title: str = "") -> Figure:
    """The figure :func:`plot_roc` saves (the title wrapped above the axes, inside the figure)."""
    if not curves:
        raise ValueError("plot_roc needs at least one curve")
    # The legend goes below the axes, one row per curve, so that it never hides a curve.
    fig = Figure(figsize=(6.4, 6.0 + 0.26 * len(curves)), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], linestyle="--", color="#1f2a6b", linewidth=1.5, zorder=1)
    entries = []
    for i, (name, (labels, scores)) in enumerate(curves.items()):
        fpr, tpr, _ = metrics.roc_curve(labels, scores)
        auc = metrics.auroc(labels, scores)
        color, style = curve_style(i)
        (line,) = ax.plot(
            fpr,
            tpr,
            color=color,
            linestyle=style,
            linewidth=2.0,
            label=f"{name} (AUROC = {auc:.2f})",
            zorder=3,
        )
        entries.append((auc, i, line))
    entries.sort(key=lambda e: (-e[0], e[1]))
    longest = max(len(str(e[2].get_label())) for e in entries)
    fig.legend(
        handles=[e[2] for e in entries],
        loc="outside lower center",
        ncols=2 if longest <= 32 else 1,  # two columns only where the labels fit beside each other
        fontsize=10,
        frameon=False,
    )
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_anchor("S")
    ax.set_xlabel("False Positive Rate (1 − specificity)", fontsize=12)
    ax.set_ylabel("True Positive Rate (sensitivity)", fontsize=12)
    ax.grid(True, color="#dddddd", linewidth=0.7, zorder=0)
    ax.tick_params(labelsize=10)
    if title:
        fig.suptitle("\n".join(textwrap.wrap(title, TITLE_WIDTH)), fontsize=13)
    return fig


def curve_style(index: int) -> tuple[str, str]:
    """The colour and line style of the ``index``-th curve: distinct for the first 32."""
    return PALETTE[index % len(PALETTE)], LINE_STYLES[(index // len(PALETTE)) % len(LINE_STYLES)]


# --------------------------------------------------------------------------------------------
# Heatmaps and the comparison grid
# --------------------------------------------------------------------------------------------


def red_heatmap_overlay(
    image: ArrayLike,
    amap: ArrayLike,
    vmax: float | None = None,
    alpha: float = 0.8,
    vmin: float = 0.0,
) -> NDArray[np.float64]:
    """The grey image with the anomaly map drawn in red on top.

    Per pixel, ``w = alpha * clip((amap - vmin) / (vmax - vmin), 0, 1)`` and the output is
    ``(1 - w) * grey + w * red`` with ``red = (1, 0, 0)``: where the map is at or below ``vmin``
    the pixel is the plain grey image; where it reaches ``vmax`` it is ``alpha`` of the way to
    pure red.

    Args:
        image: (H, W) grey image in [0, 1] (clipped).
        amap: (H, W) anomaly map (values below ``vmin`` count as ``vmin``).
        vmax: map value drawn at full opacity; default the 99.5th percentile of ``amap``.
        alpha: maximum opacity of the red, in [0, 1].
        vmin: map value drawn with no red (0, or a typical normal pixel's value for maps that
            are never zero, such as feature distances).

    Returns:
        (H, W, 3) float RGB in [0, 1].
    """
    img = np.clip(_plain(image, "image"), 0.0, 1.0)
    m = _plain(amap, "amap")
    if img.shape != m.shape:
        raise ValueError(f"image and amap differ in shape: {img.shape} vs {m.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if not np.isfinite(m).all():
        raise ValueError("amap contains NaN or infinite values")
    if vmax is None:
        vmax = float(np.percentile(m, MAP_SCALE_PERCENTILE))
    span = vmax - vmin
    weight = alpha * np.clip((m - vmin) / span, 0.0, 1.0) if span > 0 else np.zeros_like(m)
    red = np.array([1.0, 0.0, 0.0])
    out = (1.0 - weight)[..., None] * img[..., None] + weight[..., None] * red
    return np.clip(out, 0.0, 1.0)


def resized(
    panel: NDArray[np.float64], shape: tuple[int, int], smooth: bool
) -> NDArray[np.float64]:
    """``panel`` (H, W) or (H, W, 3) resized to ``shape`` (rows, columns): bilinear where
    ``smooth`` (a map placed on a larger image), else nearest (a model input shown larger)."""
    method = Image.Resampling.BILINEAR if smooth else Image.Resampling.NEAREST
    channels = [panel] if panel.ndim == 2 else [panel[..., c] for c in range(panel.shape[2])]
    out = [
        np.asarray(Image.fromarray(np.asarray(c, np.float32)).resize(shape[::-1], method))
        for c in channels
    ]
    return np.asarray(out[0] if panel.ndim == 2 else np.stack(out, axis=-1), dtype=np.float64)


def radiograph_overlay(
    original: ArrayLike,
    amap: ArrayLike,
    vmin: float,
    vmax: float | None,
    boxes: Sequence[tuple[int, int, int, int]] = (),
    max_side: int = 2048,
) -> NDArray[np.float64]:
    """The original radiograph (H, W) in [0, 1] with a model's map (S, S) in red over it.

    The map is placed as preprocessing placed the image (resized straight to a square, so
    stretched back to (H, W)), bilinearly. Boxes
    ``(x, y, width, height)`` in original pixels are outlined in yellow. An image longer than
    ``max_side`` is drawn smaller, its boxes with it.

    Returns:
        (h, w, 3) float RGB in [0, 1].
    """
    image = np.clip(_plain(original, "original"), 0.0, 1.0)
    m = _plain(amap, "amap")
    factor = min(1.0, max_side / max(image.shape))
    shape = (max(1, round(image.shape[0] * factor)), max(1, round(image.shape[1] * factor)))
    if shape != image.shape:
        image = resized(image, shape, smooth=True)
    heat = red_heatmap_overlay(image, resized(m, shape, smooth=True), vmax=vmax, vmin=vmin)
    for box in boxes:
        outline_box(heat, box, factor)
    return heat


def outline_box(
    rgb: NDArray[np.float64],
    box: tuple[int, int, int, int],
    factor: float = 1.0,
    colour: tuple[float, float, float] = (1.0, 0.9, 0.0),
) -> None:
    """Outline ``box`` (x, y, width, height in original pixels, drawn ``factor`` times as large)
    on ``rgb`` (h, w, 3) in place, in yellow unless ``colour`` says otherwise."""
    x, y, width, height = box
    rows, cols = rgb.shape[:2]
    x0, y0 = min(cols - 1, round(x * factor)), min(rows - 1, round(y * factor))
    x1 = max(x0, min(cols - 1, round((x + width) * factor) - 1))
    y1 = max(y0, min(rows - 1, round((y + height) * factor) - 1))
    line = max(1, round(max(rows, cols) / 400))
    value = np.asarray(colour)
    rgb[y0 : y0 + line, x0 : x1 + 1] = value
    rgb[max(y0, y1 - line + 1) : y1 + 1, x0 : x1 + 1] = value
    rgb[y0 : y1 + 1, x0 : x0 + line] = value
    rgb[y0 : y1 + 1, max(x0, x1 - line + 1) : x1 + 1] = value


def labelled_panels(
    panels: Sequence[NDArray[np.float64]],
    labels: Sequence[str],
    caption: Sequence[str],
    scale: int = 4,
) -> NDArray[np.uint8]:
    """Panels (H, W, 3) in [0, 1] side by side, enlarged, each labelled, under a caption.

    Used for ``predict``'s per-image overlay PNG: the caption lines (model, score, percentile,
    decision) above, a label under each panel.

    Returns:
        (rows, columns, 3) uint8 RGB.
    """
    if len(panels) != len(labels):
        raise ValueError(f"one label per panel: {len(labels)} vs {len(panels)}")
    row = np.concatenate([np.clip(p, 0.0, 1.0) for p in panels], axis=1)
    row = np.repeat(np.repeat(row, scale, 0), scale, 1)
    font_size = 13
    line = font_size + 5
    font = ImageFont.load_default(size=font_size)
    top, bottom = 6 + line * len(caption), line + 6
    # Wide enough for the caption (about 7 px per character at this size).
    width = max(row.shape[1], 7 * max((len(t) for t in caption), default=0) + 12)
    canvas = Image.new("RGB", (width, top + row.shape[0] + bottom), "white")
    canvas.paste(Image.fromarray(np.round(row * 255).astype(np.uint8)), (0, top))
    draw = ImageDraw.Draw(canvas)
    for i, text in enumerate(caption):
        draw.text((6, 4 + i * line), text, fill="black", font=font)
    width = row.shape[1] // len(panels)
    for i, text in enumerate(labels):
        draw.text(
            (i * width + width // 2, top + row.shape[0] + 3),
            text,
            fill="black",
            font=font,
            anchor="ma",
        )
    return np.asarray(canvas, dtype=np.uint8)


def _blank(ax: Axes) -> None:
    """No ticks, no frame."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _header(name: str) -> str:
    """A column header; long names break before a parenthesis, like "AnoDDPM\n(simplex)"."""
    if len(name) > 14 and " (" in name:
        return name.replace(" (", "\n(", 1)
    return name


def comparison_grid(
    originals: ArrayLike,
    reconstructions: Mapping[str, ArrayLike | None],
    maps: Mapping[str, ArrayLike],
    path: Path | str,
    masks: ArrayLike | None = None,
    boxes: Sequence[Sequence[tuple[float, float, float, float]]] | None = None,
    titles: Sequence[str] | None = None,
    vmax: Mapping[str, float] | None = None,
    vmin: Mapping[str, float] | None = None,
) -> Path:
    """The reference study's comparison figure: reconstructions on top, red heatmaps below.

    For each image two rows: "Reconstruction" (the original, then each model's reconstruction, or
    a grey "no reconstruction" panel) and "Heatmap" (the original with the mask contour and boxes
    in yellow, then each model's :func:`red_heatmap_overlay`). Columns are "Original" and the
    models, in the order of ``maps``.

    Args:
        originals: (K, H, W) grey images in [0, 1].
        reconstructions: model -> (K, H, W), or ``None`` for a model that does not reconstruct
            (a model of ``maps`` missing here counts as ``None``).
        maps: model -> (K, H, W) anomaly maps.
        path: output file.
        masks: (K, H, W) boolean masks outlined on the original.
        boxes: per image, a list of ``(x, y, w, h)`` boxes (top-left corner, displayed pixels).
        titles: per image, a label written at the left (e.g. "opacity\\nIM-0337"); each line
            should fit the height of two panels (about 30 characters).
        vmax: model -> map value drawn at full red. Default per model: the 99.5th percentile of
            that model's maps over all K images, so heat is comparable across the images.
        vmin: model -> map value drawn with no red (default 0; see :func:`red_heatmap_overlay`).

    Returns:
        ``path``.
    """
    orig = np.clip(_stack(originals, "originals"), 0.0, 1.0)
    k_images, height, width = orig.shape
    if not maps:
        raise ValueError("comparison_grid needs at least one model in maps")
    unknown = set(reconstructions) - set(maps)
    if unknown:
        raise ValueError(f"reconstructions for models without maps: {sorted(unknown)}")
    models = list(maps)
    model_maps = {name: _stack(maps[name], f"maps[{name!r}]") for name in models}
    model_recs: dict[str, NDArray[np.float64] | None] = {}
    for name in models:
        rec = reconstructions.get(name)
        model_recs[name] = None if rec is None else _stack(rec, f"reconstructions[{name!r}]")
    for name in models:
        for kind, arr in (("maps", model_maps[name]), ("reconstructions", model_recs[name])):
            if arr is not None and arr.shape != orig.shape:
                raise ValueError(
                    f"{kind}[{name!r}] has shape {arr.shape}, originals have {orig.shape}"
                )
    mask_arr = None
    if masks is not None:
        mask_arr = _stack(masks, "masks") > 0.5
        if mask_arr.shape != orig.shape:
            raise ValueError(f"masks have shape {mask_arr.shape}, originals have {orig.shape}")
    if boxes is not None and len(boxes) != k_images:
        raise ValueError(f"boxes must have one list per image: {len(boxes)} vs {k_images}")
    if titles is not None and len(titles) != k_images:
        raise ValueError(f"titles must have one entry per image: {len(titles)} vs {k_images}")
    scale = {
        name: (
            float(vmax[name])
            if vmax is not None and name in vmax
            else float(np.percentile(model_maps[name], MAP_SCALE_PERCENTILE))
        )
        for name in models
    }

    n_cols = 1 + len(models)
    panel = 1.7  # inches per panel side (scaled by the aspect ratio)
    panel_h = panel * height / width
    gap = 0.12  # relative height of the spacer row between images
    # Titles are written rotated, one column per line, left of the row labels.
    title_lines = max((str(t).count("\n") + 1 for t in titles), default=1) if titles else 0
    left_in = 0.6 + 0.19 * title_lines
    top_in, bottom_in, right_in = 0.6, 0.08, 0.08
    fig_w = left_in + n_cols * panel + right_in
    grid_h = panel_h * (2 * k_images + gap * (k_images - 1))
    fig_h = top_in + grid_h + bottom_in
    fig = Figure(figsize=(fig_w, fig_h))
    ratios: list[float] = []
    for k in range(k_images):
        ratios += [1.0, 1.0] + ([gap] if k < k_images - 1 else [])
    gs = GridSpec(
        len(ratios),
        n_cols,
        figure=fig,
        height_ratios=ratios,
        left=left_in / fig_w,
        right=1.0 - right_in / fig_w,
        top=1.0 - top_in / fig_h,
        bottom=bottom_in / fig_h,
        wspace=0.03,
        hspace=0.03 * 2,
    )
    grey: dict[str, Any] = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0, "interpolation": "nearest"}
    for k in range(k_images):
        row = 3 * k
        rec_axes = [fig.add_subplot(gs[row, c]) for c in range(n_cols)]
        map_axes = [fig.add_subplot(gs[row + 1, c]) for c in range(n_cols)]
        for ax in (*rec_axes, *map_axes):
            _blank(ax)
        rec_axes[0].imshow(orig[k], **grey)
        map_axes[0].imshow(orig[k], **grey)
        if mask_arr is not None and mask_arr[k].any():
            map_axes[0].contour(
                mask_arr[k].astype(float), levels=[0.5], colors=_OUTLINE, linewidths=1.3
            )
        if boxes is not None:
            for x, y, w, h in boxes[k]:
                map_axes[0].add_patch(
                    Rectangle(
                        (x - 0.5, y - 0.5), w, h, fill=False, edgecolor=_OUTLINE, linewidth=1.3
                    )
                )
        map_axes[0].set_xlim(-0.5, width - 0.5)
        map_axes[0].set_ylim(height - 0.5, -0.5)
        for c, name in enumerate(models, start=1):
            rec = model_recs[name]
            if rec is None:
                rec_axes[c].set_facecolor("#9a9a9a")
                rec_axes[c].text(
                    0.5,
                    0.5,
                    "no\nreconstruction",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white",
                    transform=rec_axes[c].transAxes,
                )
            else:
                rec_axes[c].imshow(np.clip(rec[k], 0.0, 1.0), **grey)
            floor = float(vmin[name]) if vmin is not None and name in vmin else 0.0
            overlay = red_heatmap_overlay(
                orig[k], model_maps[name][k], vmax=scale[name], vmin=floor
            )
            map_axes[c].imshow(overlay, interpolation="nearest")
        rec_axes[0].set_ylabel("Reconstruction", fontsize=9)
        map_axes[0].set_ylabel("Heatmap", fontsize=9)
        if titles is not None:
            # A label spanning the image's two rows, left of the row labels.
            top = rec_axes[0].get_position().y1
            bottom = map_axes[0].get_position().y0
            fig.text(
                0.06 / fig_w,
                (top + bottom) / 2.0,
                str(titles[k]),
                rotation=90,
                ha="left",
                va="center",
                multialignment="center",
                fontsize=8.5,
                fontweight="bold",
            )
        if k == 0:
            for c, name in enumerate(["Original", *models]):
                rec_axes[c].set_title(_header(name), fontsize=10, fontweight="bold", pad=5)
    return save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# Score histograms
# --------------------------------------------------------------------------------------------


def panel_grid(
    rows: Sequence[Sequence[NDArray[np.float64]]],
    column_labels: Sequence[str],
    path: Path | str,
    row_titles: Sequence[str] | None = None,
    panel: float = 2.6,
) -> Path:
    """RGB panels (h, w, 3) in rows, each drawn at its own aspect ratio, labelled above each
    column and, with ``row_titles``, left of each row; written to ``path``."""
    if not rows or any(len(row) != len(column_labels) for row in rows):
        raise ValueError("panel_grid needs rows of one panel per column label")
    n_rows, n_cols = len(rows), len(column_labels)
    left = 0.5 if row_titles else 0.05
    fig = Figure(figsize=(left + n_cols * panel, 0.5 + n_rows * panel))
    gs = GridSpec(
        n_rows,
        n_cols,
        figure=fig,
        left=left / (left + n_cols * panel),
        right=0.99,
        top=1.0 - 0.45 / (0.5 + n_rows * panel),
        bottom=0.01,
        wspace=0.04,
        hspace=0.04,
    )
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            ax = fig.add_subplot(gs[r, c])
            _blank(ax)
            ax.imshow(np.clip(image, 0.0, 1.0), interpolation="antialiased")
            if r == 0:
                ax.set_title(_header(column_labels[c]), fontsize=8)
            if c == 0 and row_titles:
                ax.set_ylabel(row_titles[r], fontsize=7)
    return save_figure(fig, path)


def score_histograms(
    scores: Mapping[str, tuple[ArrayLike, ArrayLike]],
    path: Path | str,
    bins: int = 30,
) -> Path:
    """One panel per model: normal vs abnormal image-score histograms (density, shared bins).

    Args:
        scores: model name -> ``(labels, scores)``.
        path: output file.
        bins: number of bins, shared by both classes of a panel.

    Returns:
        ``path``.
    """
    if not scores:
        raise ValueError("score_histograms needs at least one model")
    n = len(scores)
    n_cols = n if n <= 3 else (2 if n == 4 else 3)
    n_rows = -(-n // n_cols)
    fig = Figure(figsize=(3.6 * n_cols, 2.8 * n_rows))
    for i, (name, (labels, values)) in enumerate(scores.items()):
        y = np.asarray(labels)
        s = np.asarray(values, dtype=np.float64)
        if y.shape != s.shape or y.ndim != 1:
            raise ValueError(f"{name}: labels and scores must be 1-D of one length")
        if not np.isfinite(s).all():
            raise ValueError(f"{name}: scores contain NaN or infinite values")
        ax = fig.add_subplot(n_rows, n_cols, i + 1)
        edges = np.histogram_bin_edges(s, bins=bins).tolist()
        for cls, label, colour in (
            (0, "normal", _NORMAL_COLOUR),
            (1, "abnormal", _ABNORMAL_COLOUR),
        ):
            part = s[y == cls]
            if part.size == 0:
                continue
            ax.hist(
                part,
                bins=edges,
                density=True,
                alpha=0.45,
                color=colour,
                label=f"{label} (n={part.size})",
            )
            ax.hist(part, bins=edges, density=True, histtype="step", color=colour, linewidth=1.2)
        title = name
        if (y == 0).any() and (y == 1).any():
            title += f"  (AUROC {metrics.auroc(y, s):.2f})"
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("anomaly score", fontsize=9)
        ax.set_ylabel("density", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.set_ylim(0.0, ax.get_ylim()[1] * 1.3)  # headroom for the legend
        ax.legend(fontsize=8, loc="upper right", frameon=True, framealpha=0.85)
    fig.tight_layout()
    return save_figure(fig, path)
