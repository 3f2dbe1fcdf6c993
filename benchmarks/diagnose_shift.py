"""What differs between the images a model trains on and the images it is judged on.

For a split-folder dataset with the ``official`` protocol (ZhangLab: ``train/`` and ``test-dev/``)
this prints, per group (training normals, the labelled validation split's normals and
abnormals, and the abnormal ``train/`` images that the protocol does not use), the mean
intensity, the mean intensity of the central half of the image (the lung fields and
mediastinum), the fine-detail energy (mean absolute Laplacian), the framing of the lung fields
(the lungs' share of the image and their top and bottom rows as fractions of the side, from the
thresholded masks AnatPaste pastes into, over the images where both lungs were found), and how
well a logistic regression on 16x16 pixels tells training normals from validation normals
(5-fold cross-validated AUROC; 0.5 = no difference). With ``--run``, a trained model's scores
say which moved for it: AUROC of its normal validation images (from ``train/``) against the
validation split's normals, and against its abnormals. No model is trained and nothing is chosen
here.

    python benchmarks/diagnose_shift.py
    python benchmarks/diagnose_shift.py --run runs/zhanglab/runs/anatpaste
    python benchmarks/diagnose_shift.py --intensity local   # after local contrast normalisation
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

from common import zhanglab_root
from cxr_anomaly.core.config import DataConfig
from cxr_anomaly.data.datamodule import PreparedData
from cxr_anomaly.data.lungs import find_lungs
from cxr_anomaly.data.records import ABNORMAL
from cxr_anomaly.data.splits import make_splits
from cxr_anomaly.evaluation import metrics
from cxr_anomaly.postprocess.baselines import detail_energy
from cxr_anomaly.runtime.checkpoint import load_weights, read_metadata
from cxr_anomaly.runtime.inference import infer_arrays


def _default_root() -> Path:
    return zhanglab_root()


def _pooled(images: np.ndarray, factor: int) -> np.ndarray:
    n, side = len(images), images.shape[-1]
    cells = side // factor
    return images.reshape(n, cells, factor, cells, factor).mean((2, 4)).reshape(n, -1)


def lung_framing(images: np.ndarray) -> dict[str, float]:
    """Mean share of the image, top and bottom row (fractions of the side) of the lung fields,
    over the images whose two lungs the thresholds found (not mirrored or assumed)."""
    side = images.shape[-1]
    found = [mask for mask, how in map(find_lungs, images) if how == "threshold"]
    rows = [np.flatnonzero(mask.any(axis=1)) for mask in found]
    return {
        "lungs_found": len(found) / max(len(images), 1),
        "lung_fraction": float(np.mean([mask.mean() for mask in found])),
        "lung_top": float(np.mean([r[0] for r in rows])) / side,
        "lung_bottom": float(np.mean([r[-1] + 1 for r in rows])) / side,
    }


def group_stats(images: np.ndarray) -> dict[str, float]:
    """Mean intensity, central-half mean intensity, fine-detail energy and lung framing of a
    group."""
    side = images.shape[-1]
    centre = images[..., side // 4 : 3 * side // 4, side // 4 : 3 * side // 4]
    return {
        "images": len(images),
        "mean_intensity": float(images.mean()),
        "central_mean_intensity": float(centre.mean()),
        "detail_energy": float(detail_energy(images).mean()),
        **lung_framing(images),
    }


def domain_auroc(first: np.ndarray, second: np.ndarray, pool: int = 4) -> float:
    """Cross-validated AUROC of a logistic regression telling ``first`` from ``second``."""
    features = np.concatenate([_pooled(first, pool), _pooled(second, pool)])
    labels = np.r_[np.zeros(len(first)), np.ones(len(second))]
    classifier = LogisticRegression(C=0.1, max_iter=2000)
    predicted = cross_val_predict(classifier, features, labels, cv=5, method="predict_proba")
    return metrics.auroc(labels, predicted[:, 1])


def model_shift(run_dir: Path) -> dict[str, float]:
    """AUROCs of a trained model's scores: held-out train/ normals against the validation
    split's normals, and against its abnormals."""
    metadata = read_metadata(run_dir)
    model = load_weights(run_dir, metadata)
    data = PreparedData(metadata.data)
    data.prepare(("val_normal", "val"))

    def scores(images: np.ndarray) -> np.ndarray:
        return infer_arrays(model, images, 128).scores[model.config.default_score]

    held_out = scores(data.view("val_normal").images())
    val = data.view("val")
    found = scores(val.images())
    found_normal, found_abnormal = found[val.labels == 0], found[val.labels == ABNORMAL]

    def separation(other: np.ndarray) -> float:
        labels = np.r_[np.zeros(len(held_out)), np.ones(len(other))]
        return metrics.auroc(labels, np.r_[held_out, other])

    return {
        "train_normal_vs_validation_normal": separation(found_normal),
        "train_normal_vs_validation_abnormal": separation(found_abnormal),
        "validation_normal_vs_abnormal": metrics.auroc(val.labels, found),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(_default_root()))
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--intensity", default="none")
    parser.add_argument("--unused-abnormal", type=int, default=1000, help="train/ abnormal images")
    parser.add_argument("--run", help="a trained run whose scores to compare as well")
    parser.add_argument("--out", default="benchmarks/results/diagnose-shift.json")
    args = parser.parse_args(argv)

    config = DataConfig(spec=f"folder:{args.root}", size=args.size, intensity=args.intensity)
    data = PreparedData(config)
    data.prepare(("train", "val_normal", "val"))
    normal = np.concatenate([data.view("train").images(), data.view("val_normal").images()])
    val = data.view("val")
    groups = {
        "train/ normal": normal[:, 0],
        "validation normal": val.images()[val.labels == 0][:, 0],
        "validation abnormal": val.images()[val.labels == ABNORMAL][:, 0],
    }
    # The abnormal train/ images take no part in the protocol; read them for comparison only.
    everything = make_splits(data.source.samples(), data.source.protocol("external"))
    unused = [
        s
        for s in everything.samples("test")
        if not s.is_normal and s.sample_id.startswith("train/")
    ][: args.unused_abnormal]
    if unused:
        rows = [data.cache.rows[s.sample_id] for s in unused]
        data.cache.ensure(rows, workers=config.workers)
        groups["train/ abnormal (unused)"] = data.cache.images(rows)
    found = {
        "data": str(args.root),
        "size": args.size,
        "intensity": args.intensity,
        "groups": {name: group_stats(images) for name, images in groups.items()},
        "domain_auroc_train_vs_validation_normal": domain_auroc(
            groups["train/ normal"], groups["validation normal"]
        ),
    }
    print(f"{args.root}, {args.size} px, intensity {args.intensity}")
    print(
        f"{'group':<26} {'images':>6} {'mean':>6} {'centre':>6} {'detail':>7} "
        f"{'lungs':>6} {'top':>6} {'bottom':>6} {'found':>6}"
    )
    for name, stats in found["groups"].items():
        print(
            f"{name:<26} {stats['images']:>6} {stats['mean_intensity']:>6.3f} "
            f"{stats['central_mean_intensity']:>6.3f} {stats['detail_energy']:>7.4f} "
            f"{stats['lung_fraction']:>6.3f} {stats['lung_top']:>6.3f} "
            f"{stats['lung_bottom']:>6.3f} {stats['lungs_found']:>6.2f}"
        )
    auroc = found["domain_auroc_train_vs_validation_normal"]
    print(f"train/ normal vs validation normal, logistic regression on 16x16 pixels: {auroc:.3f}")
    if args.run:
        found["model"] = {"run": args.run, **model_shift(Path(args.run))}
        for name, value in found["model"].items():
            if name != "run":
                print(f"{args.run}: {name.replace('_', ' ')} AUROC {value:.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(found, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
