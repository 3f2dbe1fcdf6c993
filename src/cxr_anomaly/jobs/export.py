"""Export a trained model to ONNX: the scoring network as a graph, preprocessing and
post-processor beside it in JSON, and a parity check through onnxruntime before anything is
written.

The graph takes preprocessed images (N, 1, S, S) in [0, 1], the same arrays ``predict`` builds
(read, resized, intensity mode of the run), and returns the image score of the run's default
score (N,), its anomaly map (N, 1, S, S) and, for reconstruction models, the reconstruction. Map
smoothing and fused scores are inside the graph. ``export.json`` holds what the graph cannot: the
preprocessing, the model's post-processor (the scores' calibration on normal images, the map
scale, the input statistics, a sharpness fusion) and the measured parity. The weights are
inside ``model.onnx``, so the folder can be moved as it is.

Models whose score is one network pass export (BiGAN, VAE-GAN, AnatPaste). AnoDDPM's score is a
loop of denoiser calls on seeded noise (tens to hundreds of them); the denoiser alone is not a
scoring function, so AnoDDPM runs are refused with that reason.

    cxr-anomaly export runs/anatpaste --format onnx            # writes runs/anatpaste/onnx/
    cxr-anomaly predict runs/anatpaste/onnx scans/ --out preds # scores through onnxruntime
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cxr_anomaly.core import atomic
from cxr_anomaly.core.version import __version__
from cxr_anomaly.data.phantoms import ANOMALY_TYPES, make_phantom
from cxr_anomaly.jobs.predict import TrainedModel
from cxr_anomaly.models.components.lightning_model import AnomalyModel
from cxr_anomaly.runtime.onnx import (
    EXPORT_FILE,
    ONNX_FILE,
    ExportError,
    ExportJson,
    PreprocessingJson,
    onnx_session,
)

log = logging.getLogger(__name__)


OPSET = 18


#: Exported and trained scores (and maps) agree to |a - b| <= TOLERANCE * (1 + |b|).
TOLERANCE = 1e-4


#: Images the parity check scores: synthetic phantoms (normal and abnormal) and uniform noise.
PARITY_IMAGES = 16


class ScoringGraph(nn.Module):
    """One model's default score, its drawn map and (if any) reconstruction, as one pass."""

    def __init__(self, model: AnomalyModel, score: str) -> None:
        super().__init__()
        self.model = model
        self.score = score
        self.map = model.config.drawn_score

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        result = self.model.infer(image)
        outputs: tuple[torch.Tensor, ...] = (result.scores[self.score], result.maps[self.map])
        if result.reconstruction is not None:
            outputs = (*outputs, result.reconstruction)
        return outputs


@dataclass
class ExportReport:
    """What ``export_onnx`` wrote and how closely the export matches the trained model."""

    out_dir: Path
    model: str
    score: str
    max_score_difference: float
    max_map_difference: float
    parity_images: int
    seconds: float


def parity_images(size: int, count: int = PARITY_IMAGES, seed: int = 0) -> np.ndarray:
    """Fixed check images (count, 1, size, size): phantoms, half with lesions, and noise."""
    rng = np.random.default_rng(seed)
    if not 32 <= size <= 256:  # the phantoms' range
        return rng.random((count, 1, size, size), dtype=np.float32)
    phantoms = [
        make_phantom(size, seed + i, ANOMALY_TYPES[i // 2 % len(ANOMALY_TYPES)] if i % 2 else None)
        for i in range(count - 2)
    ]
    images = [p.image for p in phantoms] + list(rng.random((2, size, size)))
    return np.stack(images).astype(np.float32)[:, None]


def _difference(exported: np.ndarray, trained: np.ndarray) -> tuple[float, bool]:
    """Largest absolute difference, and whether every element is within the tolerance."""
    gap = np.abs(exported.astype(np.float64) - trained.astype(np.float64))
    within = bool(np.all(gap <= TOLERANCE * (1 + np.abs(trained.astype(np.float64)))))
    return float(gap.max(initial=0.0)), within


def export_onnx(run_dir: Path, out_dir: Path | None = None, opset: int = OPSET) -> ExportReport:
    """Export the trained model of ``run_dir`` to ``out_dir`` (default ``run_dir/onnx``).

    Raises:
        ExportError: for AnoDDPM, without onnx/onnxruntime, or when the exported scores or maps
            differ from the trained model's by more than :data:`TOLERANCE`.
    """

    started = time.perf_counter()
    trained = TrainedModel(run_dir)
    model = trained.model
    if not model.exportable:
        raise ExportError(f"{trained.name} cannot be exported: {model.export_refusal}")
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError as err:
        raise ExportError("onnx is not installed: pip install 'cxr-anomaly[export]'") from err
    out_dir = Path(out_dir) if out_dir is not None else Path(run_dir) / "onnx"
    out_dir.mkdir(parents=True, exist_ok=True)
    graph = ScoringGraph(model.float().eval(), trained.model_score).eval()
    images = torch.from_numpy(parity_images(trained.size))
    names = ["score", "map", *(["reconstruction"] if model.has_reconstruction else [])]
    with atomic.atomic_path(out_dir / ONNX_FILE) as tmp:
        torch.onnx.export(
            graph,
            (images[:2],),
            str(tmp),
            dynamo=True,
            input_names=["image"],
            output_names=names,
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
            opset_version=opset,
            # The weights inside model.onnx (far below protobuf's 2 GB for these networks), so
            # the folder is self-contained and can be copied or moved as it is.
            external_data=False,
            verbose=False,
        )
    session = onnx_session(out_dir / ONNX_FILE)
    outputs = session.run(None, {"image": images.numpy()})
    with torch.no_grad():
        reference = [t.numpy() for t in graph(images)]
    score_gap, score_ok = _difference(outputs[0], reference[0])
    map_gap, map_ok = _difference(outputs[1], reference[1])
    if not (score_ok and map_ok):
        (out_dir / ONNX_FILE).unlink(missing_ok=True)
        raise ExportError(
            f"the exported graph differs from the trained model (score by {score_gap:.3g}, map "
            f"by {map_gap:.3g}; tolerance {TOLERANCE} relative): not written"
        )
    description = ExportJson(
        format="onnx",
        onnx=ONNX_FILE,
        opset=opset,
        model=trained.name,
        score=trained.model_score,
        outputs=names,
        input="image: float32 (N, 1, S, S) in [0, 1], preprocessed as below",
        preprocessing=PreprocessingJson(
            image_size=trained.size,
            intensity=trained.intensity,
            apply_voi_lut=trained.read_options.apply_voi_lut,
        ),
        post_processor=trained.post_processor.to_dict(),
        exported_from=str(Path(run_dir).resolve()),
        versions={"cxr_anomaly": __version__, "torch": torch.__version__},
        parity={
            "images": len(images),
            "max_score_difference": score_gap,
            "max_map_difference": map_gap,
            "tolerance": f"|exported - trained| <= {TOLERANCE} * (1 + |trained|)",
        },
    )
    atomic.write_text(out_dir / EXPORT_FILE, json.dumps(description, indent=2) + "\n")
    log.info("exported %s to %s (score gap %.2g)", trained.name, out_dir, score_gap)
    return ExportReport(
        out_dir=out_dir,
        model=trained.name,
        score=trained.model_score,
        max_score_difference=score_gap,
        max_map_difference=map_gap,
        parity_images=len(images),
        seconds=time.perf_counter() - started,
    )
