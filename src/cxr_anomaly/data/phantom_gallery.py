"""A figure of synthetic phantoms: normal patients, and one phantom per anomaly type.

Example:
    >>> from pathlib import Path
    >>> save_phantom_gallery(Path("docs/phantoms.png"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cxr_anomaly.core import atomic
from cxr_anomaly.data.phantoms import ANOMALY_TYPES, DEFAULT_DIFFICULTY, make_phantom

logger = logging.getLogger(__name__)

N_NORMAL = 4
"""Normal phantoms in the top row."""
MASK_COLOUR = "#ff3b1f"


def save_phantom_gallery(
    path: Path, size: int = 128, seed: int = 0, difficulty: float = DEFAULT_DIFFICULTY
) -> Path:
    """Save a PNG of normal phantoms and one phantom per anomaly type, masks outlined.

    The top row shows ``N_NORMAL`` normal patients (seeds ``seed`` to ``seed + 3``); the middle row
    one abnormal phantom per type of :data:`ANOMALY_TYPES`, its mask outlined and its type as the
    title; the bottom row ``|abnormal - normal|`` for the same seed, which the mask should enclose.
    The file is written atomically (a temporary file in the same folder, then a rename), so a
    reader never sees half a figure.

    Args:
        path: where to write the PNG; its folder is created if missing.
        size: image side in pixels (32 to 256).
        seed: the first seed; the anomaly phantoms use the seeds after the normal ones.
        difficulty: anomaly difficulty, 0 (obvious) to 1 (subtle).

    Returns:
        ``path``.
    """
    path = Path(path)
    cols = len(ANOMALY_TYPES)
    normals = [make_phantom(size, seed + i) for i in range(N_NORMAL)]
    pairs = [
        (
            make_phantom(size, seed + N_NORMAL + i, kind, difficulty),
            make_phantom(size, seed + N_NORMAL + i),
        )
        for i, kind in enumerate(ANOMALY_TYPES)
    ]
    fig = Figure(figsize=(1.75 * cols, 1.95 * 3 + 0.3), dpi=90)
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, cols, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    offset = (cols - len(normals)) // 2
    for i, phantom in enumerate(normals):
        ax = axes[0, offset + i]
        ax.imshow(phantom.image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(f"normal, seed {seed + i}", fontsize=8)
    for i, (abnormal, normal) in enumerate(pairs):
        ax = axes[1, i]
        ax.imshow(abnormal.image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.contour(
            abnormal.mask.astype(np.float32), levels=[0.5], colors=MASK_COLOUR, linewidths=0.8
        )
        ax.set_title(str(abnormal.anomaly).replace("_", " "), fontsize=8)
        ax = axes[2, i]
        change = np.abs(abnormal.image - normal.image)
        ax.imshow(change, cmap="magma", vmin=0.0, vmax=max(float(change.max()), 1e-6))
        ax.contour(abnormal.mask.astype(np.float32), levels=[0.5], colors="#39c5ff", linewidths=0.6)
        ax.set_title("|abnormal - normal|", fontsize=7)
    fig.suptitle(
        f"Synthetic chest X-ray phantoms ({size}x{size}, difficulty {difficulty:g}); "
        "masks outlined",
        fontsize=9,
    )
    fig.tight_layout(pad=0.3, rect=(0.0, 0.0, 1.0, 0.96))

    with atomic.atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png")
    logger.info("wrote phantom gallery %s", path)
    return path
