"""Benchmark the synthetic phantoms: rendering speed, and how hard they are for trivial detectors.

Renders every item of the default :class:`SyntheticSpec` (1,600 images) at each speed size and
reports images per second, then scores the default test set with two detectors that look only at
global statistics:

- ``mean_intensity``: the image mean;
- ``histogram_l1``: the L1 distance between the image's 32-bin intensity histogram and the mean
  histogram of the training normals.

A good synthetic task keeps these near chance (AUROC about 0.5-0.65) so that a model has to find
the local anomaly. For contrast, reference rows score the same test set with the simplest
reconstruction models: PCA fitted on the training normals (``PCA_COMPONENTS`` components; score =
mean absolute reconstruction error) and a plain convolutional autoencoder trained for
``AE_EPOCHS`` epochs (about a minute on two CPU cores; scored by its mean absolute error and by
the peak of its error map smoothed with sigma 2 px): what the demo's reconstruction models,
trained for minutes, should at least reach.

AUROC is reported as is (larger score = abnormal) and in the better of the two directions, since a
cheating detector would pick that one. Per anomaly type AUROCs (that type against all test
normals) show which type, if any, gives itself away globally.

Usage::

    python benchmarks/phantoms.py [--size 64] [--speed-sizes 64 128] [--json out.json]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

from common import machine, write_json
from cxr_anomaly.core.filters import smooth
from cxr_anomaly.data.phantoms import (
    ANOMALY_TYPES,
    SyntheticItem,
    SyntheticSpec,
    render_item,
    synthetic_items,
)
from cxr_anomaly.models.components.maps import peak_score

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "phantoms.json"
HIST_BINS = 32
PCA_COMPONENTS = 50
AE_EPOCHS = 20
AE_LATENT = 64


def _render(
    items: list[SyntheticItem], size: int, difficulty: float
) -> tuple[np.ndarray, float, float]:
    """Render items into a ``(n, size, size)`` array; return it, the wall and the CPU seconds.

    CPU seconds are reported too because wall time on a shared machine depends on its load.
    """
    images = np.empty((len(items), size, size), np.float32)
    start, cpu_start = time.perf_counter(), time.process_time()
    for i, item in enumerate(items):
        images[i] = render_item(item, size, difficulty).image
    return images, time.perf_counter() - start, time.process_time() - cpu_start


def _histograms(images: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Normalised ``HIST_BINS``-bin intensity histograms over [0, 1], one row per image."""
    flat = images.reshape(len(images), -1)
    bins = np.minimum((flat * HIST_BINS).astype(np.int64), HIST_BINS - 1)
    offsets = bins + HIST_BINS * np.arange(len(images))[:, None]
    counts = np.bincount(offsets.ravel(), minlength=HIST_BINS * len(images))
    hist: npt.NDArray[np.float64] = counts.reshape(len(images), HIST_BINS) / flat.shape[1]
    return hist


def _auroc(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    auc = float(roc_auc_score(labels, scores))
    return {"auroc": auc, "auroc_best_direction": max(auc, 1.0 - auc)}


def trivial_detectors(
    train: npt.NDArray[np.float32],
    test: npt.NDArray[np.float32],
    test_types: list[str | None],
    with_reference: bool = True,
) -> dict[str, dict[str, object]]:
    """AUROC of the mean-intensity and histogram-distance detectors, overall and per type.

    Args:
        train: ``(n, h, w)`` normal training images (the histogram reference).
        test: ``(m, h, w)`` test images.
        test_types: the anomaly type of every test image, ``None`` for normal.
        with_reference: also score with the reconstruction references (``"pca_reconstruction"``,
            ``"autoencoder_mean"``, ``"autoencoder_peak"``), which are not trivial detectors.

    Returns:
        ``{detector: {"auroc", "auroc_best_direction", "per_type": {type: auroc}}}``.
    """
    reference = _histograms(train).mean(axis=0)
    scores = {
        "mean_intensity": test.reshape(len(test), -1).mean(axis=1),
        "histogram_l1": np.abs(_histograms(test) - reference).sum(axis=1),
    }
    if with_reference:
        scores["pca_reconstruction"] = pca_reconstruction_scores(train, test)
        scores["autoencoder_mean"], scores["autoencoder_peak"] = autoencoder_scores(train, test)
    labels = np.array([t is not None for t in test_types], dtype=int)
    normal = labels == 0
    out: dict[str, dict[str, object]] = {}
    for name, score in scores.items():
        entry: dict[str, object] = dict(_auroc(labels, score))
        per_type: dict[str, float] = {}
        for kind in ANOMALY_TYPES:
            chosen = normal | np.array([t == kind for t in test_types])
            if chosen.sum() > normal.sum():
                per_type[kind] = float(roc_auc_score(labels[chosen], score[chosen]))
        entry["per_type"] = per_type
        out[name] = entry
    return out


def pca_reconstruction_scores(
    train: npt.NDArray[np.float32], test: npt.NDArray[np.float32], components: int = PCA_COMPONENTS
) -> npt.NDArray[np.float64]:
    """Mean absolute error of each test image's reconstruction from the training normals' PCA."""
    x = train.reshape(len(train), -1).astype(np.float64)
    y = test.reshape(len(test), -1).astype(np.float64)
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    basis = vt[:components]
    centred = y - mean
    residual = centred - (centred @ basis.T) @ basis
    scores: npt.NDArray[np.float64] = np.abs(residual).mean(axis=1)
    return scores


def _autoencoder(latent: int = AE_LATENT) -> nn.Sequential:
    """A plain convolutional autoencoder for 64 x 64 images: three stride-2 convolutions to a
    ``latent``-dimensional code and three transposed convolutions back."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 4, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(32, 64, 4, 2, 1),
        nn.BatchNorm2d(64),
        nn.LeakyReLU(0.2),
        nn.Conv2d(64, 128, 4, 2, 1),
        nn.BatchNorm2d(128),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(128 * 8 * 8, latent),
        nn.Linear(latent, 128 * 8 * 8),
        nn.Unflatten(1, (128, 8, 8)),
        nn.ReLU(),
        nn.ConvTranspose2d(128, 64, 4, 2, 1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.ConvTranspose2d(64, 32, 4, 2, 1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.ConvTranspose2d(32, 1, 4, 2, 1),
        nn.Sigmoid(),
    )


def autoencoder_scores(
    train: npt.NDArray[np.float32],
    test: npt.NDArray[np.float32],
    epochs: int = AE_EPOCHS,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A plain autoencoder trained on ``train`` (n, 64, 64) with an L1 loss (Adam 1e-3, batch
    64); each test image's mean absolute error and the peak (after a 3 x 3 average) of its error
    map smoothed with sigma 2 px."""
    if train.shape[1:] != (64, 64):
        raise ValueError(f"the autoencoder reference takes 64 x 64 images, got {train.shape[1:]}")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = _autoencoder()
    optimiser = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.from_numpy(train)[:, None]
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 64):
            batch = x[order[start : start + 64]]
            loss = F.l1_loss(model(batch), batch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()
    with torch.no_grad():
        y = torch.from_numpy(test)[:, None]
        error = (model(y) - y).abs()
        peak = peak_score(smooth(error, 2.0))
    return error.mean(dim=(1, 2, 3)).numpy(), peak.numpy()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table and write JSON. Returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64, help="image size for the AUROCs")
    parser.add_argument(
        "--speed-sizes", type=int, nargs="*", default=[64, 128], help="sizes timed (all items)"
    )
    parser.add_argument("--difficulty", type=float, default=SyntheticSpec.difficulty)
    parser.add_argument("--seed", type=int, default=SyntheticSpec.seed)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    args = parser.parse_args(argv)

    spec = SyntheticSpec(difficulty=args.difficulty, seed=args.seed)
    items = synthetic_items(spec)
    train_items = [it for it in items if it.split == "train"]
    test_items = [it for it in items if it.split == "test"]

    speed: list[dict[str, float]] = []
    rendered: dict[int, np.ndarray] = {}
    for size in args.speed_sizes:
        images, seconds, cpu_seconds = _render(items, size, spec.difficulty)
        rendered[size] = images
        speed.append(
            {
                "size": size,
                "n_images": len(items),
                "seconds": seconds,
                "images_per_s": len(items) / seconds,
                "cpu_seconds": cpu_seconds,
                "images_per_cpu_s": len(items) / cpu_seconds,
            }
        )
    if args.size in rendered:
        by_id = {it.item_id: i for i, it in enumerate(items)}
        all_images = rendered[args.size]
        train = all_images[[by_id[it.item_id] for it in train_items]]
        test = all_images[[by_id[it.item_id] for it in test_items]]
    else:
        train = _render(train_items, args.size, spec.difficulty)[0]
        test = _render(test_items, args.size, spec.difficulty)[0]
    detectors = trivial_detectors(train, test, [it.anomaly for it in test_items])

    print(f"Synthetic phantoms: {len(items)} images per set (default SyntheticSpec)")
    print(f"{'size':>6} {'images':>7} {'seconds':>8} {'images/s':>9} {'images/CPU-s':>13}")
    for row in speed:
        print(
            f"{row['size']:>6} {row['n_images']:>7} {row['seconds']:>8.2f} "
            f"{row['images_per_s']:>9.1f} {row['images_per_cpu_s']:>13.1f}"
        )
    print()
    print(
        f"Trivial detectors, test set at {args.size}x{args.size}, difficulty {spec.difficulty} "
        f"({sum(it.anomaly is None for it in test_items)} normal, "
        f"{sum(it.anomaly is not None for it in test_items)} abnormal)"
    )
    header = f"{'detector':<18} {'AUROC':>6} {'best-dir':>8}"
    print(header + "".join(f" {kind:>14}" for kind in ANOMALY_TYPES))
    for name, entry in detectors.items():
        per_type = entry["per_type"]
        assert isinstance(per_type, dict)
        print(
            f"{name:<18} {entry['auroc']:>6.3f} {entry['auroc_best_direction']:>8.3f}"
            + "".join(f" {per_type.get(kind, float('nan')):>14.3f}" for kind in ANOMALY_TYPES)
        )
    print("(per type: that type against all test normals; pca_reconstruction and autoencoder_*")
    print(f" are reference reconstruction models, PCA with {PCA_COMPONENTS} components and a plain")
    print(f" autoencoder trained {AE_EPOCHS} epochs, not trivial detectors)")

    payload: dict[str, object] = {
        "benchmark": "phantoms",
        "spec": asdict(spec),
        "auroc_size": args.size,
        "speed": speed,
        "trivial_detectors": detectors,
        "machine": machine(),
    }
    write_json(args.json, payload)
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
