"""Score new images with a trained model: a score, its percentile among normal images, a
decision at a calibrated threshold, and a heatmap; unreadable files get an error row instead.

Python:
    >>> model = load_model("runs/vaegan")  # doctest: +SKIP
    >>> [p.score for p in model.predict(["a.dcm", "b.png"])]  # doctest: +SKIP

Command line: ``cxr-anomaly predict RUN_DIR INPUT... --out DIR``, where RUN_DIR is a run folder
or a folder written by ``cxr-anomaly export``.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from cxr_anomaly.core import atomic
from cxr_anomaly.core.config import STORED_INTENSITY
from cxr_anomaly.data.images import (
    SUPPORTED_SUFFIXES,
    ImageReadError,
    ReadOptions,
    read_image,
    to_grey,
)
from cxr_anomaly.data.preprocess import preprocess
from cxr_anomaly.models.components.lightning_model import AnomalyModel
from cxr_anomaly.postprocess.calibration import ScoreCalibration
from cxr_anomaly.postprocess.post_processor import PostProcessor
from cxr_anomaly.postprocess.regions import Region, map_regions
from cxr_anomaly.postprocess.sharpness_fusion import SharpnessFusion
from cxr_anomaly.reporting import viz
from cxr_anomaly.runtime.checkpoint import (
    CheckpointError,
    ModelMetadata,
    load_weights,
    read_metadata,
)
from cxr_anomaly.runtime.inference import BatchOutput, Inferred, assemble, infer_loader
from cxr_anomaly.runtime.onnx import EXPORT_FILE, onnx_session, read_export
from cxr_anomaly.runtime.trainer import ScoringOptions, build_predict_trainer, is_global_zero

log = logging.getLogger(__name__)

CSV_COLUMNS = (
    "path",
    "patient_id",
    "score",
    "normal_percentile",
    "decision",
    "threshold",
    "input_distance",
    "out_of_distribution",
    "model",
    "overlay",
    "error",
)
CHUNK = 512
RESULT_FILE = "predictions.csv"
REGIONS_FILE = "regions.csv"
#: ``regions.csv``: one row per region (boxes in the original image's pixels, as RSNA's).
REGION_COLUMNS = (
    "path",
    "region",
    "x",
    "y",
    "width",
    "height",
    "peak",
    "map_pixels",
    "score",
    "model",
)
PARTIAL_FILE = "predictions.partial.csv"
OVERLAY_SCALE = 4
#: Full-resolution overlays are drawn at most this many pixels on their long side.
MAX_OVERLAY_SIDE = 2048
#: One input as the loader gives it: the image and what its row needs (ok, error, patient...).
Batch = dict[str, Any]


@dataclass
class Prediction:
    """The model's verdict on one input (``error`` set, and the rest empty, if unreadable)."""

    path: str
    model: str
    patient_id: str | None = None
    score: float | None = None
    normal_percentile: float | None = None
    decision: str | None = None
    threshold: float | None = None
    #: Mahalanobis distance of the input's global statistics to the normal validation images.
    input_distance: float | None = None
    #: Farther than every normal validation image: the score should not be read as a diagnosis.
    out_of_distribution: bool | None = None
    error: str | None = None
    image: np.ndarray | None = field(default=None, repr=False)
    anomaly_map: np.ndarray | None = field(default=None, repr=False)
    reconstruction: np.ndarray | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None


class LoadedInput(NamedTuple):
    """One input read and preprocessed for a model."""

    pixels: np.ndarray
    """As the model sees it (S, S)."""
    stored: np.ndarray | None
    """At its stored intensities, for a sharpness fusion (None without one)."""
    patient_id: str | None


def find_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders searched recursively for DICOM/PNG/JPEG, globs expanded.

    A path that does not exist and matches nothing is kept, so that it gets an error row.
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
            )
        elif path.exists():
            found.append(path)
        elif glob.has_magic(str(item)):
            found += sorted(
                Path(p) for p in glob.glob(str(item), recursive=True) if Path(p).is_file()
            )
        else:
            found.append(path)
    unique: dict[str, Path] = {}
    for path in found:
        unique.setdefault(str(path), path)
    return list(unique.values())


class ScoringModel(ABC):
    """What ``predict`` needs of a model: its preprocessing, its post-processor, an inference.

    :class:`TrainedModel` scores with the trained PyTorch model of a run folder,
    :class:`ExportedModel` with the ONNX graph written by ``cxr-anomaly export``; both read and
    preprocess inputs the same way and go through the same pipeline, so they give the same rows.
    """

    name: str
    size: int
    intensity: str
    read_options: ReadOptions
    #: The model's own score (the one its network computes).
    model_score: str
    #: The score reported: the model's own, or its fusion with sharpness (``name+sharpness``).
    score_name: str
    post_processor: PostProcessor
    #: The reported score's distribution on normal validation images.
    calibration: ScoreCalibration
    #: Where the model was trained (data source), for ``repr`` and reports.
    trained_on: str

    def _post_process(self, post_processor: PostProcessor | None, where: Path) -> None:
        if post_processor is None:
            raise CheckpointError(
                f"{where}: the model has no score calibration (trained without "
                "normal validation images), so scores cannot be turned into decisions"
            )
        self.post_processor = post_processor
        try:
            self.score_name = post_processor.reported_score(self.model_score)
        except ValueError as err:
            raise CheckpointError(f"{where}: {err}") from err
        self.calibration = post_processor.calibration(self.score_name)

    @property
    def sharpness(self) -> SharpnessFusion | None:
        """The fusion with the sharpness detector kept with the model, if trained with one."""
        return self.post_processor.sharpness

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self.name!r}, score={self.score_name!r}, "
            f"threshold at 95% specificity={self.calibration.threshold(0.95):.4g}, "
            f"image_size={self.size}, intensity={self.intensity!r}, "
            f"trained_on={self.trained_on!r})"
        )

    @abstractmethod
    def inference(self, options: ScoringOptions) -> Callable[[DataLoader[Batch]], Inferred]:
        """Scores, maps and reconstructions of every image of a loader of inputs (one
        :class:`Inferred`), on the devices of ``options``."""

    def load(self, item: str | Path | np.ndarray) -> LoadedInput:
        """Preprocess one input exactly as the training data was (raises ImageReadError)."""
        if isinstance(item, np.ndarray):
            grey, patient = to_grey(item), None
        else:
            loaded = read_image(item, self.read_options)
            grey, patient = loaded.pixels, loaded.meta.patient_id
        stored = None
        if self.sharpness is not None:
            stored = preprocess(grey, self.size, STORED_INTENSITY)
        return LoadedInput(preprocess(grey, self.size, self.intensity), stored, patient)

    def predict(
        self,
        inputs: Sequence[str | Path | np.ndarray],
        specificity: float = 0.95,
        batch_size: int = 32,
    ) -> list[Prediction]:
        """Predictions for files or in-memory grey arrays, in input order."""
        return [p for chunk in self.iter_predict(inputs, specificity, batch_size) for p in chunk]

    def iter_predict(
        self,
        inputs: Sequence[str | Path | np.ndarray],
        specificity: float = 0.95,
        batch_size: int = 32,
        options: ScoringOptions | None = None,
        num_workers: int = 0,
        chunk: int = CHUNK,
    ) -> Iterator[list[Prediction]]:
        """Predictions chunk by chunk, in input order (bad inputs become error rows, never
        exceptions): inputs read by ``num_workers`` loader processes, scored on the devices
        of ``options`` (by default this process's CPU)."""
        options = options or ScoringOptions(batch_size=batch_size)
        threshold = self.calibration.threshold(specificity)
        infer = self.inference(options)
        for start in range(0, len(inputs), chunk):
            items = list(inputs[start : start + chunk])
            loader = DataLoader(
                _Inputs(self, items, start), batch_size=options.batch_size, num_workers=num_workers
            )
            yield self._predictions(_Inputs.labels(items, start), infer(loader), threshold)

    def _predictions(
        self, labels: Sequence[str], inferred: Inferred, threshold: float
    ) -> list[Prediction]:
        """Rows in input order from the inference over the inputs named ``labels``."""
        extras = inferred.extras
        rows = [
            Prediction(
                path=label,
                model=self.name,
                threshold=threshold,
                patient_id=extras["patient"][i] or None,
                error=extras["error"][i] or None,
            )
            for i, label in enumerate(labels)
        ]
        good = [i for i in range(len(labels)) if bool(extras["ok"][i])]
        if not good:
            return rows
        images = np.stack([np.asarray(extras["pixels"][i]) for i in good])
        stored = None
        if self.sharpness is not None:
            stored = np.stack([np.asarray(extras["stored"][i]) for i in good])
        scores = self.post_processor.reported_values(
            inferred.scores[self.model_score][good], stored
        )
        statistics = self.post_processor.input_statistics
        distances = statistics.distance(images) if statistics is not None else None
        recon = inferred.reconstructions
        for k, i in enumerate(good):
            row = rows[i]
            if distances is not None and statistics is not None:
                row.input_distance = float(distances[k])
                row.out_of_distribution = bool(statistics.novel(distances[k]))
            row.score = float(scores[k])
            row.normal_percentile = float(self.calibration.percentile(scores[k]))
            row.decision = "abnormal" if scores[k] > threshold else "normal"
            row.image = images[k]
            row.anomaly_map = inferred.maps[i]
            row.reconstruction = None if recon is None else recon[i]
        return rows

    def read_original(self, item: str | Path | np.ndarray) -> np.ndarray:
        """An input as the reader gives it, before any resize: grey (H, W) in [0, 1]."""
        if isinstance(item, np.ndarray):
            return to_grey(item)
        return read_image(item, self.read_options).pixels

    def regions(self, prediction: Prediction, original_shape: tuple[int, int]) -> list[Region]:
        """The map's connected regions above the map scale (as anomalous as the top 0.5% of
        normal validation pixels), as boxes on an original of ``original_shape`` (H, W)."""
        if prediction.anomaly_map is None:
            return []
        threshold = self.post_processor.map_scale
        return map_regions(prediction.anomaly_map, threshold, original_shape)

    def overlay(
        self,
        prediction: Prediction,
        original: np.ndarray | None = None,
        regions: Sequence[Region] = (),
    ) -> np.ndarray:
        """RGB uint8 under a caption (score, normal percentile, decision, the colour scale):
        with ``original``, the radiograph at its own resolution (up to
        :data:`MAX_OVERLAY_SIDE`) with the map in red and the ``regions`` boxed, then the model's
        input with its map; without it, the input, its map and (if the model has one) the
        reconstruction, enlarged."""
        if prediction.image is None or prediction.anomaly_map is None:
            raise ValueError("no image to draw for a failed prediction")
        image = prediction.image
        floor, scale = self.post_processor.map_floor, self.post_processor.map_scale or None
        heat = viz.red_heatmap_overlay(image, prediction.anomaly_map, vmax=scale, vmin=floor)
        caption = [
            f"{self.name} ({self.score_name}): {prediction.decision}",
            f"score {prediction.score:.4g}, threshold {prediction.threshold:.4g}, "
            f"normal percentile {prediction.normal_percentile:.1f}",
            f"red: none at map <= {floor:.3g} (median normal pixel), "
            f"full at >= {scale or float('nan'):.3g} (99.5th percentile of normal pixels)",
        ]
        if prediction.out_of_distribution:
            caption.append("OUT OF DISTRIBUTION: unlike its normal images; not a diagnosis")
        if original is None:
            panels = [np.repeat(image[..., None], 3, axis=2), heat]
            labels = ["image", "anomaly map (red)"]
            if prediction.reconstruction is not None:
                panels.append(np.repeat(prediction.reconstruction[..., None], 3, axis=2))
                labels.append("reconstruction")
            return viz.labelled_panels(panels, labels, caption, scale=OVERLAY_SCALE)
        big = viz.radiograph_overlay(
            original,
            prediction.anomaly_map,
            floor,
            scale,
            [(r.x, r.y, r.width, r.height) for r in regions],
            MAX_OVERLAY_SIDE,
        )
        side = big.shape[0]
        model_view = viz.resized(heat, (side, side), smooth=False)
        height, width = original.shape
        labels = [
            f"the radiograph ({width} x {height}), map in red"
            + (f", {len(regions)} region(s) boxed" if regions else ""),
            f"the model's input ({image.shape[0]} px), its map",
        ]
        return viz.labelled_panels([big, model_view], labels, caption, scale=1)


class TrainedModel(ScoringModel):
    """A trained model with the preprocessing and post-processor recorded in its run folder."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.metadata: ModelMetadata = read_metadata(self.run_dir)
        self.model: AnomalyModel = load_weights(self.run_dir, self.metadata)
        data = self.metadata.data
        self.name = self.metadata.model
        self.size = data.size
        self.intensity = data.intensity
        self.read_options = ReadOptions(apply_voi_lut=data.apply_voi_lut)
        self.model_score = self.model.config.default_score
        self.trained_on = data.spec
        self._post_process(self.metadata.post_processor, self.run_dir)

    def inference(self, options: ScoringOptions) -> Callable[[DataLoader[Batch]], Inferred]:
        """Through :func:`inference.infer_loader` (one Trainer for every loader)."""
        trainer = build_predict_trainer(options)
        return lambda loader: infer_loader(
            self.model, loader, reconstructions=True, trainer=trainer
        )


class ExportedModel(ScoringModel):
    """A model exported by ``cxr-anomaly export``, scored through onnxruntime on the CPU."""

    def __init__(self, export_dir: str | Path) -> None:
        self.export_dir = Path(export_dir)
        self.description = read_export(self.export_dir)
        preprocessing = self.description["preprocessing"]
        self.name = str(self.description["model"])
        self.size = int(preprocessing["image_size"])
        self.intensity = str(preprocessing["intensity"])
        self.read_options = ReadOptions(apply_voi_lut=bool(preprocessing["apply_voi_lut"]))
        self.model_score = str(self.description["score"])
        self.trained_on = self.description["exported_from"]
        post_processor = PostProcessor.from_dict(self.description["post_processor"])
        self._post_process(post_processor, self.export_dir)
        self.session = onnx_session(self.export_dir / str(self.description["onnx"]))

    def score_batch(self, images: np.ndarray) -> BatchOutput:
        """The graph's outputs for preprocessed images (B, 1, S, S), every map kept."""
        outputs = self.session.run(None, {"image": np.ascontiguousarray(images)})
        index = np.arange(len(images))
        return BatchOutput(
            index=index,
            scores={self.model_score: np.asarray(outputs[0], np.float64)},
            kept=index,
            maps=outputs[1][:, 0],
            recon=outputs[2][:, 0] if len(outputs) > 2 else None,
        )

    def inference(self, options: ScoringOptions) -> Callable[[DataLoader[Batch]], Inferred]:
        """Through onnxruntime, batch by batch (``options`` name no device for it)."""

        def run(loader: DataLoader[Batch]) -> Inferred:
            parts = []
            for batch in loader:
                part = self.score_batch(batch["image"].numpy())
                part.index = part.kept = batch["index"].numpy()
                part.extras = {k: v for k, v in batch.items() if k not in ("image", "index")}
                parts.append(part)
            return assemble(parts, len(loader.dataset))  # type: ignore[arg-type]

        return run


def load_model(run_dir: str | Path) -> ScoringModel:
    """The model of ``run_dir`` (a run folder, or a folder written by ``export``), ready to
    ``predict``."""

    if (Path(run_dir) / EXPORT_FILE).is_file():
        return ExportedModel(run_dir)
    return TrainedModel(run_dir)


def overlay_name(path: str) -> str:
    """A stable, unique PNG name for an input path."""
    digest = hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:10]
    return f"{Path(path).stem[:60]}-{digest}.png"


@dataclass
class PredictReport:
    """What a ``predict`` run did."""

    csv_path: Path
    n_inputs: int
    n_scored: int
    n_failed: int
    n_resumed: int
    failures: list[tuple[str, str]]


def _read_rows(path: Path, columns: Sequence[str] = CSV_COLUMNS) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [row for row in csv.DictReader(handle) if set(columns) <= set(row)]


def _write_rows(
    path: Path, rows: list[dict[str, str]], columns: Sequence[str] = CSV_COLUMNS
) -> None:
    with atomic.atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)


def _region_row(prediction: Prediction, index: int, region: Region) -> dict[str, str]:
    return {
        "path": prediction.path,
        "region": str(index),
        "x": str(region.x),
        "y": str(region.y),
        "width": str(region.width),
        "height": str(region.height),
        "peak": f"{region.peak:.6g}",
        "map_pixels": str(region.map_pixels),
        "score": "" if prediction.score is None else f"{prediction.score:.8g}",
        "model": prediction.model,
    }


def _row(prediction: Prediction, overlay: str) -> dict[str, str]:
    def fmt(value: float | None) -> str:
        return "" if value is None else f"{value:.8g}"

    return {
        "path": prediction.path,
        "patient_id": prediction.patient_id or "",
        "score": fmt(prediction.score),
        "normal_percentile": fmt(prediction.normal_percentile),
        "decision": prediction.decision or "",
        "threshold": fmt(prediction.threshold),
        "input_distance": fmt(prediction.input_distance),
        "out_of_distribution": (
            ""
            if prediction.out_of_distribution is None
            else "yes"
            if prediction.out_of_distribution
            else "no"
        ),
        "model": prediction.model,
        "overlay": overlay,
        "error": prediction.error or "",
    }


class _Inputs(Dataset[Batch]):
    """Inputs (files or grey arrays) read and preprocessed as the model's training data; errors
    kept, not raised (an unreadable file is an all-zero image with ``ok`` false, scored and then
    ignored)."""

    def __init__(
        self, model: ScoringModel, items: Sequence[str | Path | np.ndarray], start: int = 0
    ) -> None:
        self.model = model
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    @staticmethod
    def labels(items: Sequence[str | Path | np.ndarray], start: int = 0) -> list[str]:
        """How each input is named in its row: its path, or ``<array N>`` (N: its position)."""
        return [
            f"<array {start + i}>" if isinstance(item, np.ndarray) else str(item)
            for i, item in enumerate(items)
        ]

    def __getitem__(self, index: int) -> Batch:
        size = self.model.size
        item: Batch = {"index": index, "ok": True, "error": "", "patient": ""}
        try:
            loaded = self.model.load(self.items[index])
            item.update(
                image=torch.from_numpy(loaded.pixels)[None], patient=loaded.patient_id or ""
            )
            if loaded.stored is not None:
                item["stored"] = torch.from_numpy(loaded.stored)
        except ImageReadError as err:
            item.update(
                image=torch.zeros(1, size, size), ok=False, error=" ".join(err.reason.split())
            )
        item["pixels"] = item["image"][0]
        if self.model.sharpness is not None and "stored" not in item:
            item["stored"] = torch.zeros(size, size)
        return item


def run_predict(
    run_dir: Path,
    inputs: Sequence[str | Path],
    out: Path,
    specificity: float = 0.95,
    batch_size: int = 32,
    options: ScoringOptions | None = None,
    num_workers: int = 0,
    regions: bool = False,
) -> PredictReport | None:
    """Predict every input; write overlays and ``predictions.csv`` under ``out``.

    Each overlay draws the map over the radiograph at its own resolution, beside the model's
    input. With ``regions``, ``regions.csv`` lists each image's connected map regions above
    the map scale, as boxes in the original image's pixels (see :func:`map_regions`), and the
    overlays box them.

    Files are read (``num_workers`` loader processes) and scored through Lightning's
    ``Trainer.predict`` on the devices of ``options`` (an exported model, see
    :mod:`cxr_anomaly.export`, scores through onnxruntime on the CPU); the first process alone
    writes. Rows
    are saved atomically after each chunk in ``predictions.partial.csv``; an interrupted run,
    started again, skips what it finished. ``predictions.csv`` appears only when all inputs
    have a row. Returns the report on the first process, ``None`` on the others.
    """
    model = load_model(run_dir)
    paths = [str(p) for p in find_inputs(inputs)]
    if is_global_zero():
        (out / "overlays").mkdir(parents=True, exist_ok=True)
    previous = {
        row["path"]: row
        for row in _read_rows(out / RESULT_FILE) + _read_rows(out / PARTIAL_FILE)
        if row.get("model") == model.name and (row["error"] or (out / row["overlay"]).is_file())
    }
    todo = [p for p in paths if p not in previous]
    done = dict(previous)
    boxes: dict[str, list[dict[str, str]]] = {}
    for row in _read_rows(out / REGIONS_FILE, REGION_COLUMNS):
        if row["path"] in previous:
            boxes.setdefault(row["path"], []).append(row)
    options = options or ScoringOptions(batch_size=batch_size)
    primary = is_global_zero()
    chunks = model.iter_predict(todo, specificity, options=options, num_workers=num_workers)
    for predictions in chunks:
        if not primary:
            continue
        for prediction in predictions:
            overlay = ""
            if prediction.ok:
                original = model.read_original(prediction.path)
                found = model.regions(prediction, original.shape) if regions else []
                boxes[prediction.path] = [
                    _region_row(prediction, i, r) for i, r in enumerate(found)
                ]
                overlay = f"overlays/{overlay_name(prediction.path)}"
                drawing = model.overlay(prediction, original, found)
                with atomic.atomic_path(out / overlay) as tmp:
                    Image.fromarray(drawing).save(tmp, format="PNG")
            done[prediction.path] = _row(prediction, overlay)
        _write_rows(out / PARTIAL_FILE, [done[p] for p in paths if p in done])
        if regions:
            found_rows = [row for p in paths for row in boxes.get(p, [])]
            _write_rows(out / REGIONS_FILE, found_rows, REGION_COLUMNS)
    if not primary:
        return None
    rows = [done[p] for p in paths]
    _write_rows(out / RESULT_FILE, rows)
    (out / PARTIAL_FILE).unlink(missing_ok=True)
    failures = [(r["path"], r["error"]) for r in rows if r["error"]]
    return PredictReport(
        csv_path=out / RESULT_FILE,
        n_inputs=len(paths),
        n_scored=len(rows) - len(failures),
        n_failed=len(failures),
        n_resumed=len(paths) - len(todo),
        failures=failures,
    )
