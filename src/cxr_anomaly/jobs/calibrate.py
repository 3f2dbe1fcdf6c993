"""Fit a trained model's post-processor on its normal validation images.

The model scores the held-out normal images once (twice when it fuses scores itself: the
fused score's statistics come from its members' scores); their scores, the pixels of their
default map and their global statistics give the :class:`PostProcessor`. With the training
setting ``fuse_sharpness`` the sharpness detector is fitted on the normal training images (at
their stored intensities) and fused with the default score.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from cxr_anomaly.core.config import TrainConfig
from cxr_anomaly.data.datamodule import PreparedData
from cxr_anomaly.models.components.lightning_model import AnomalyModel
from cxr_anomaly.postprocess.baselines import BATCH
from cxr_anomaly.postprocess.calibration import DEFAULT_SPECIFICITIES, ScoreCalibration
from cxr_anomaly.postprocess.maps import MAP_FLOOR_PERCENTILE, MAP_SCALE_PERCENTILE
from cxr_anomaly.postprocess.novelty import InputStatistics
from cxr_anomaly.postprocess.post_processor import PostProcessor
from cxr_anomaly.postprocess.sharpness_fusion import fit_sharpness_fusion, stored_intensity_views
from cxr_anomaly.runtime.inference import infer_arrays

log = logging.getLogger(__name__)

#: The map colour scale is read from at most this many pixels, taken at a fixed stride.
MAP_SAMPLE_PIXELS = 2_000_000


def score_normal_images(
    model: AnomalyModel, images: np.ndarray, batch_size: int = 64
) -> tuple[dict[str, np.ndarray], float, float]:
    """Every score of ``model`` for images (N, 1, S, S) in [0, 1], in one process, and the map
    scale and floor: the 99.5th percentile and the median of the default map's pixels. Heatmaps
    draw the floor (a typical normal pixel) as no red and the scale as full red, so that a map
    that is never zero on normal images (a feature distance) is not red everywhere."""
    if not len(images):
        return {}, 0.0, 0.0
    inferred = infer_arrays(model, images, batch_size)
    pixels = inferred.maps.ravel()
    sample = pixels[:: max(1, pixels.size // MAP_SAMPLE_PIXELS)]
    scale, floor = np.percentile(sample, [MAP_SCALE_PERCENTILE, MAP_FLOOR_PERCENTILE])
    return inferred.scores, float(scale), float(floor)


def fit_post_processor(
    model: AnomalyModel,
    normal_images: np.ndarray,
    batch_size: int = 64,
    specificities: Sequence[float] = DEFAULT_SPECIFICITIES,
) -> tuple[PostProcessor, dict[str, np.ndarray]]:
    """The post-processor of ``model`` fitted on normal images (N, 1, S, S), and every score of
    each of those images, in order."""
    scores, map_scale, map_floor = score_normal_images(model, normal_images, batch_size)
    if model.config.fuse:
        members = [scores[name] for name in model.config.fuse]
        model.set_fusion_stats(
            [float(s.mean()) for s in members],
            [float(s.std(ddof=1)) if len(s) > 1 else 0.0 for s in members],
        )
        scores, map_scale, map_floor = score_normal_images(model, normal_images, batch_size)
    post_processor = PostProcessor(
        scores={name: ScoreCalibration.fit(v, specificities) for name, v in scores.items()},
        map_scale=map_scale,
        map_floor=map_floor,
        n_images=len(normal_images),
        input_statistics=(InputStatistics.fit(normal_images) if len(normal_images) >= 3 else None),
    )
    return post_processor, scores


def post_processor_of_run(
    model: AnomalyModel, data: PreparedData, train: TrainConfig
) -> PostProcessor | None:
    """The post-processor of a model trained on ``data`` (``None`` without normal validation
    images), with the sharpness fusion when ``train.fuse_sharpness`` asks for it."""
    normal_val = data.view("val_normal")
    if not len(normal_val):
        if train.fuse_sharpness:
            log.warning("no normal validation images: the sharpness fusion cannot be fitted")
        return None
    log.info("calibrating scores on %d normal validation images", len(normal_val))
    post_processor, normal_scores = fit_post_processor(model, normal_val.images(), train.batch_size)
    if not train.fuse_sharpness:
        return post_processor
    score = model.config.default_score
    log.info("fitting the sharpness fusion of %s", score)
    stored_train, stored_val = stored_intensity_views(data, "train", "val_normal")
    fusion = fit_sharpness_fusion(
        stored_train.batches(BATCH), stored_val.batches(BATCH), normal_scores[score], score
    )
    fused = fusion.fused(normal_scores[score], stored_val.batches(BATCH))
    return post_processor.with_sharpness(fusion, fused)
