"""Score one trained run on the yardstick: pneumonia on two halves, inserted findings, phantoms.

Every part takes a trained model and returns plain dicts (JSON-ready), so a benchmark can pool
seeds and write tables. The model's default score and its default map are what is measured.

- :func:`pneumonia_halves`: AUROC on the ``choose`` and ``confirm`` halves of the run's own
  labelled validation split, with 95% patient-bootstrap intervals.
- :func:`inserted_findings`: findings inserted into the normal images of that split
  (:mod:`.insertions`): per finding and level, the AUROC of the images with the finding against
  the same images untouched, and the localization (pixel AP, best Dice, pointing game) of the
  default map against the exact mask. The trivial detectors are scored on the same pairs.
- :func:`phantom_findings`: a run trained on the built-in phantoms, on their test split: the
  AUROC and localization per finding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cxr_anomaly.data.datamodule import PreparedData, SplitView
from cxr_anomaly.data.preprocess import preprocess, resize_image
from cxr_anomaly.evaluation import metrics
from cxr_anomaly.evaluation.robustness import working_images
from cxr_anomaly.evaluation.yardstick.blended import insert_blended
from cxr_anomaly.evaluation.yardstick.halves import HALVES
from cxr_anomaly.evaluation.yardstick.insertions import FINDINGS, LEVELS, Inserted, insert_finding
from cxr_anomaly.models.components.lightning_model import AnomalyModel
from cxr_anomaly.postprocess.baselines import TRIVIAL_DETECTORS
from cxr_anomaly.runtime.checkpoint import ModelMetadata, load_weights, read_metadata
from cxr_anomaly.runtime.inference import infer_arrays

VALIDATION_SPLIT = "val"
MASK_COVERAGE = 0.25
"""A model-size pixel belongs to a finding's mask when the finding covers this share of it."""
N_BOOT = 1000
WORKING_SIZE = 256
"""The side at which findings are inserted, whatever the model's size."""

Scorer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""Images (N, 1, S, S) as the model sees them -> (scores (N,), maps (N, S, S))."""
Generator = Callable[[np.ndarray, str, str, np.random.Generator], Inserted]
"""(image, finding, level, rng) -> the image with that finding, and its mask."""
GENERATORS: dict[str, Generator] = {"density": insert_finding, "blended": insert_blended}
"""The yardstick's generator (``density``, every choice is made on it) and the second one
(``blended``, :mod:`.blended`), kept for judging chosen defaults on unseen images."""


def model_scorer(model: AnomalyModel, batch_size: int = 64) -> Scorer:
    """The model's default score and default map of prepared images."""

    def score(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inferred = infer_arrays(model, images, batch_size)
        return inferred.scores[model.config.default_score], inferred.maps.astype(np.float32)

    return score


def auroc_with_ci(
    labels: np.ndarray, scores: np.ndarray, groups: Sequence[str], n_boot: int = N_BOOT
) -> dict[str, Any]:
    """AUROC and its 95% bootstrap interval resampled by ``groups`` (patients)."""
    low, high = metrics.bootstrap_ci(labels, scores, list(groups), n_boot=n_boot)
    return {"auroc": metrics.auroc(labels, scores), "ci": [low, high]}


def pneumonia_halves(
    scorer: Scorer, view: SplitView, halves: dict[str, str], n_boot: int = N_BOOT
) -> dict[str, dict[str, Any]]:
    """AUROC of ``scorer`` on each half of the labelled validation split ``view``."""
    missing = [i for i in view.ids if i not in halves]
    if missing:
        raise ValueError(f"{len(missing)} image(s) of the split are in no half, e.g. {missing[0]}")
    scores, _ = scorer(view.images())
    found: dict[str, dict[str, Any]] = {}
    for half in HALVES:
        keep = np.array([halves[i] == half for i in view.ids])
        patients = [p for p, k in zip(view.patient_ids, keep, strict=True) if k]
        found[half] = {
            **auroc_with_ci(view.labels[keep], scores[keep], patients, n_boot),
            "n_normal": int((view.labels[keep] == 0).sum()),
            "n_abnormal": int((view.labels[keep] == 1).sum()),
            "scores": scores[keep].tolist(),
            "labels": view.labels[keep].tolist(),
            "patients": patients,
        }
    return found


def _model_masks(masks: np.ndarray, size: int) -> np.ndarray:
    return np.stack([resize_image(m.astype(np.float32), size) >= MASK_COVERAGE for m in masks])


def _localization(maps: np.ndarray, masks: np.ndarray) -> dict[str, Any]:
    """Pixel AP, best Dice, the pointing game and its per-image hits (annotated images, in
    order: what the pointing game's patient-bootstrap interval resamples)."""
    found = metrics.pixel_metrics(maps, masks)
    return {
        "pixel_ap": found.pixel_ap,
        "best_dice": found.best_dice,
        "pointing": found.pointing_game,
        "pointing_hits": metrics.pointing_hits(maps, masks).astype(int).tolist(),
    }


def _pointing_ci(entries: Sequence[dict[str, Any]], groups: Sequence[Sequence[str]]) -> list[float]:
    """The 95% patient-bootstrap interval of the pointing game pooled over ``entries`` (each
    with ``pointing_hits``; ``groups[i]``: the patient of each of entry ``i``'s hits)."""
    hits = np.concatenate([np.asarray(e["pointing_hits"], float) for e in entries])
    patients = [p for group in groups for p in group]
    return list(metrics.mean_ci(hits, patients, n_boot=N_BOOT))


def _pixel_intervals(
    maps: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    groups: Sequence[Sequence[str]],
    n_boot: int,
) -> dict[str, list[float]]:
    """The 95% patient-bootstrap intervals of the mean pixel AP and mean best Dice over several
    image sets (a finding's images each, with their patients)."""
    return {
        "pixel_ap_ci": list(metrics.pixel_ap_ci(maps, masks, groups, n_boot=n_boot)),
        "best_dice_ci": list(metrics.best_dice_ci(maps, masks, groups, n_boot=n_boot)),
    }


def inserted_pairs(
    originals: Sequence[np.ndarray],
    finding: str,
    level: str,
    seed: int,
    first: int = 0,
    generator: Generator = insert_finding,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each original with ``finding`` at ``level`` inserted by ``generator``, and its mask;
    image ``i``'s draw is seeded by ``(seed, i, finding)``, so the levels share place and shape
    (``first``: the index of the first original)."""
    images, masks = [], []
    code = FINDINGS.index(finding)
    for i, original in enumerate(originals, start=first):
        inserted = generator(original, finding, level, np.random.default_rng([seed, i, code]))
        images.append(inserted.image)
        masks.append(inserted.mask)
    return images, masks


def inserted_findings(
    scorers: dict[str, Scorer],
    originals: Sequence[np.ndarray],
    patients: Sequence[str],
    size: int,
    intensity: dict[str, str],
    seed: int = 0,
    n_boot: int = N_BOOT,
    levels: Sequence[str] = tuple(LEVELS),
    findings: Sequence[str] = FINDINGS,
    generator: Generator = insert_finding,
) -> dict[str, dict[str, Any]]:
    """Per scorer, level and finding: AUROC (with interval), localization and the scores.

    Args:
        scorers: name -> scorer; ``intensity[name]`` is the intensity mode its images get.
        originals: normal images at a working size (several times ``size``), in [0, 1].
        patients: the patient of each original (the bootstrap's groups).
        size: the side the scorers take.
        seed: the insertions' seed.
        generator: what inserts the findings (one of :data:`GENERATORS`).

    Returns:
        ``found[name][level][finding]`` = {"auroc", "ci", "pixel_ap", "best_dice", "pointing",
        "scores"} (localization only for scorers with maps; the scores of the images with the
        finding), ``found[name][level]["macro"]``, and ``found[name]["untouched"]`` (the
        scores of the originals, which pair with every finding's).
    """

    def prepared(images: Sequence[np.ndarray], mode: str) -> np.ndarray:
        return np.stack([preprocess(image, size, mode) for image in images])[:, None]

    clean = {name: scorers[name](prepared(originals, intensity[name])) for name in scorers}
    groups = [*patients, *patients]
    labels = np.r_[np.zeros(len(originals)), np.ones(len(originals))]
    found: dict[str, dict[str, Any]] = {n: {"untouched": clean[n][0].tolist()} for n in scorers}
    for level in levels:
        drawn: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {name: [] for name in scorers}
        for finding in findings:
            images, masks = inserted_pairs(originals, finding, level, seed, generator=generator)
            small_masks = _model_masks(np.stack(masks), size)
            all_masks = np.r_[np.zeros_like(small_masks), small_masks]
            for name, scorer in scorers.items():
                scores, maps = scorer(prepared(images, intensity[name]))
                both = np.r_[clean[name][0], scores]
                entry = {**auroc_with_ci(labels, both, groups, n_boot), "scores": scores.tolist()}
                if maps.size:
                    both_maps = np.r_[clean[name][1], maps]
                    entry.update(_localization(both_maps, all_masks))
                    entry["pointing_ci"] = _pointing_ci([entry], [patients])
                    drawn[name].append((both_maps, all_masks))
                found[name].setdefault(level, {})[finding] = entry
        for name in scorers:
            by_finding = found[name][level]
            found[name][level]["macro"] = {
                key: float(np.mean([by_finding[f][key] for f in findings]))
                for key in ("auroc", "pixel_ap", "best_dice", "pointing")
                if key in by_finding[findings[0]]
            }
            if "pointing_hits" in by_finding[findings[0]]:
                entries = [by_finding[f] for f in findings]
                macro_ci = _pointing_ci(entries, [patients] * len(findings))
                found[name][level]["macro"]["pointing_ci"] = macro_ci
                found[name][level]["macro"].update(
                    _pixel_intervals(
                        [m for m, _ in drawn[name]],
                        [k for _, k in drawn[name]],
                        [groups] * len(drawn[name]),
                        n_boot,
                    )
                )
    return found


def _macro_auroc(untouched: np.ndarray, with_findings: list[np.ndarray], idx: np.ndarray) -> float:
    labels = np.r_[np.zeros(len(idx)), np.ones(len(idx))]
    return float(
        np.mean([metrics.auroc(labels, np.r_[untouched[idx], s[idx]]) for s in with_findings])
    )


def macro_gain(
    runs: Sequence[dict[str, Any]],
    other_runs: Sequence[dict[str, Any]],
    level: str,
    patients: Sequence[str],
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> tuple[float, tuple[float, float]]:
    """The mean over paired runs (seeds) of the gain in macro AUROC over the inserted findings
    at ``level``, with a 95% interval from one patient bootstrap shared by both runs of a pair
    (each resampled patient brings its untouched image and every finding's).

    Args:
        runs, other_runs: paired :func:`inserted_findings` results of one scorer each.
        patients: the patient of each original image.
    """
    if not runs or len(runs) != len(other_runs):
        raise ValueError(f"runs must pair up, got {len(runs)} and {len(other_runs)}")

    def arrays(run: dict[str, Any]) -> tuple[np.ndarray, list[np.ndarray]]:
        found = [f for f in FINDINGS if f in run[level]]
        return np.asarray(run["untouched"]), [np.asarray(run[level][f]["scores"]) for f in found]

    pairs = [(arrays(a), arrays(b)) for a, b in zip(runs, other_runs, strict=True)]

    def gain(idx: np.ndarray) -> float:
        return float(np.mean([_macro_auroc(*a, idx) - _macro_auroc(*b, idx) for a, b in pairs]))

    _, codes = np.unique(np.asarray(patients), return_inverse=True)
    members = [np.flatnonzero(codes == g) for g in range(codes.max() + 1)]
    rng = np.random.default_rng(seed)
    values = [
        gain(np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))]))
        for _ in range(n_boot)
    ]
    low, high = np.percentile(values, [2.5, 97.5])
    return gain(np.arange(len(codes))), (float(low), float(high))


def trivial_scorers(train_images: np.ndarray) -> dict[str, Scorer]:
    """The trivial detectors fitted on normal training images (N, 1, S, S) at stored
    intensities, as scorers without maps (score them on stored intensities too)."""
    scorers: dict[str, Scorer] = {}
    for kind in TRIVIAL_DETECTORS:
        detector = kind().fit(train_images)

        def score(images: np.ndarray, d: Any = detector) -> tuple[np.ndarray, np.ndarray]:
            return d.score(images), np.zeros(0, np.float32)

        scorers[kind.name] = score
    return scorers


def split_normals(
    data: PreparedData, split: str = VALIDATION_SPLIT
) -> tuple[list[np.ndarray], list[str]]:
    """The normal images of a labelled split (by default the validation split) at
    :data:`WORKING_SIZE`, and their patients (one size for every model, so models of any size
    see the same insertions)."""
    view = data.view(split)
    normals: SplitView = view.subset(np.flatnonzero(view.labels == 0).tolist())
    return working_images(data, normals, WORKING_SIZE), normals.patient_ids


def phantom_findings(model: AnomalyModel, data: PreparedData) -> dict[str, dict[str, Any]]:
    """Per phantom finding (and ``macro``): AUROC against every normal test image, and the
    localization of the default map over those normals and that finding's images."""
    view = data.view("test")
    scores, maps = model_scorer(model)(view.images())
    masks = view.masks()
    classes = np.array(view.classes)
    normal = view.labels == 0
    found: dict[str, dict[str, Any]] = {}
    patients = np.asarray(view.patient_ids)
    groups = []
    for name, value in metrics.per_class_auroc(view.labels, scores, classes).items():
        keep = normal | (classes == name)
        found[name] = {"auroc": value, **_localization(maps[keep], masks[keep])}
        annotated = masks[keep].reshape(int(keep.sum()), -1).any(axis=1)
        groups.append(patients[keep][annotated].tolist())
        found[name]["pointing_ci"] = _pointing_ci([found[name]], [groups[-1]])
    findings = list(found)
    found["macro"] = {
        key: float(np.mean([found[f][key] for f in findings]))
        for key in ("auroc", "pixel_ap", "best_dice", "pointing")
    }
    found["macro"]["pointing_ci"] = _pointing_ci([found[f] for f in findings], groups)
    sets = [normal | (classes == f) for f in findings]
    found["macro"].update(
        _pixel_intervals(
            [maps[k] for k in sets], [masks[k] for k in sets], [patients[k] for k in sets], N_BOOT
        )
    )
    return found


def load_run_data(
    run_dir: Path, splits: Sequence[str], data_root: Path | None = None
) -> tuple[AnomalyModel, PreparedData, ModelMetadata]:
    """The trained model of ``run_dir``, its own data (``splits`` prepared; read from the image
    folder ``data_root`` instead of the run's own when given) and its metadata."""
    metadata = read_metadata(run_dir)
    config = metadata.data
    if data_root is not None:
        config = dataclasses.replace(config, spec=f"folder:{data_root}")
    data = PreparedData(config)
    data.prepare(tuple(splits))
    return load_weights(run_dir, metadata), data, metadata
