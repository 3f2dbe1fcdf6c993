"""The one batched inference path: a model's scores, maps and reconstructions of many images.

Evaluation, ``predict``, calibration and the figures all go through :func:`infer_batch`:
:func:`infer_loader` runs it under Lightning's ``Trainer.predict`` (the devices and strategies
of training; under several processes each image is scored once, the distributed sampler's
padding removed by index, and every process gets the whole result), :func:`infer_arrays` runs
it in this process over in-memory images.

A batch is a data loader's ``(images, indices)`` or a mapping with ``image`` and ``index``;
other entries of a mapping (a file's read error, its patient id) come back beside the outputs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from cxr_anomaly.models.components.lightning_model import AnomalyModel
from cxr_anomaly.runtime.trainer import ScoringOptions, build_predict_trainer

# (indices of a batch's kept images, their maps (B, H, W) float32) -> per-image records, each
# with an ``index`` attribute: what a caller keeps of the maps instead of the maps themselves.
MapReducer = Callable[[np.ndarray, np.ndarray], list[Any]]


@dataclass
class Inferred:
    """What a model said about ``n`` images, in their order.

    ``maps`` and ``reconstructions`` hold the images of ``kept`` only (those the caller asked
    for), in index order; with a map reducer, ``reduced`` holds its records instead of the maps
    (each image's once). ``extras`` are the batches' other entries, one value per image.
    """

    scores: dict[str, np.ndarray]
    kept: np.ndarray
    maps: np.ndarray
    reconstructions: np.ndarray | None
    extras: dict[str, list[Any]] = field(default_factory=dict)
    seconds: float = 0.0
    reduced: list[Any] = field(default_factory=list)


@dataclass
class BatchOutput:
    """What one batch gave, as numpy arrays on the host (:func:`assemble` joins them).

    The small per-batch arrays are numpy copies, not tensors: a split's worth of small tensors
    kept between the batches' large activations fragments the C heap, and the process's memory
    then grows with the split although what it holds does not.
    """

    #: (B,) the images' indices in the dataset (a padded last batch repeats some).
    index: np.ndarray
    #: Every score, (B,) each.
    scores: dict[str, np.ndarray]
    #: The indices whose map (and reconstruction) are kept, and those maps (K, S, S).
    kept: np.ndarray
    maps: np.ndarray
    #: The kept images' reconstructions (K, S, S), or None.
    recon: np.ndarray | None = None
    #: What a map reducer kept instead of the maps.
    reduced: list[Any] = field(default_factory=list)
    #: The batch's other entries, one value per image.
    extras: dict[str, Any] = field(default_factory=dict)


def _unpack(batch: Any) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    if isinstance(batch, Mapping):
        extras = {k: v for k, v in batch.items() if k not in ("image", "index")}
        return batch["image"], batch["index"], extras
    images, index = batch
    return images, index, {}


def infer_batch(
    model: AnomalyModel,
    batch: Any,
    keep: torch.Tensor | None = None,
    reconstructions: bool = False,
    map_dtype: torch.dtype = torch.float32,
    reduce_maps: MapReducer | None = None,
) -> BatchOutput:
    """One batch through ``model.infer``: the indices, every score, and the default map (as
    ``map_dtype``; float16 halves what a split's maps hold) and with ``reconstructions`` the
    reconstruction of the images whose index ``keep`` marks (all without ``keep``). With
    ``reduce_maps``, what it keeps of the maps replaces them."""
    images, index_tensor, extras = _unpack(batch)
    index = index_tensor.cpu().numpy().astype(np.int64)
    result = model.infer(images)
    chosen = np.ones(len(index), bool) if keep is None else keep[index].numpy()
    amap = result.maps[model.config.drawn_score][:, 0]
    on_device = torch.from_numpy(chosen).to(amap.device)
    recon = result.reconstruction
    kept_maps = amap[on_device]
    reduced = []
    if reduce_maps is not None:
        reduced = reduce_maps(index[chosen], kept_maps.float().cpu().numpy())
        kept_maps = kept_maps[:0]
    return BatchOutput(
        index=index,
        scores={
            name: values.cpu().numpy().astype(np.float64) for name, values in result.scores.items()
        },
        kept=index[chosen],
        maps=kept_maps.to(map_dtype).cpu().numpy().copy(),
        reduced=reduced,
        recon=None if recon is None or not reconstructions else recon[on_device, 0].cpu().numpy(),
        extras={k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in extras.items()},
    )


def assemble(outputs: Sequence[BatchOutput], n: int) -> Inferred:
    """The outputs of :func:`infer_batch` over ``n`` images, each image once, in index order."""
    if not outputs:
        raise ValueError("nothing was scored")
    index = np.concatenate([o.index for o in outputs])
    order, first = np.unique(index, return_index=True)
    if len(order) != n:
        raise RuntimeError(f"scored {len(order)} of {n} images")
    scores = {
        name: np.concatenate([o.scores[name] for o in outputs])[first] for name in outputs[0].scores
    }
    kept_all = np.concatenate([o.kept for o in outputs])
    kept, kept_first = np.unique(kept_all, return_index=True)
    maps = np.concatenate([o.maps for o in outputs])
    maps = maps[kept_first] if len(maps) else maps
    reduced = {r.index: r for o in outputs for r in o.reduced}  # padding repeats images
    has_recon = outputs[0].recon is not None
    recon = (
        np.concatenate([o.recon for o in outputs if o.recon is not None])[kept_first]
        if has_recon
        else None
    )
    extras = {
        key: [value for o in outputs for value in _as_list(o.extras[key])]
        for key in outputs[0].extras
    }
    return Inferred(
        scores=scores,
        kept=kept.astype(np.int64),
        maps=maps,
        reconstructions=recon,
        extras={key: [values[i] for i in first] for key, values in extras.items()},
        reduced=[reduced[i] for i in sorted(reduced)],
    )


def _as_list(value: Any) -> list[Any]:
    """A batch entry as one value per image (a tensor's rows stay tensors)."""
    return list(value.unbind(0)) if isinstance(value, torch.Tensor) else list(value)


class InferenceModule(L.LightningModule):
    """Wraps a model for ``Trainer.predict``: each step is one :func:`infer_batch`."""

    def __init__(
        self,
        model: AnomalyModel,
        keep: np.ndarray | None = None,
        reconstructions: bool = False,
        map_dtype: torch.dtype = torch.float32,
        reduce_maps: MapReducer | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.keep = None if keep is None else torch.from_numpy(keep)
        self.reconstructions = reconstructions
        self.map_dtype = map_dtype
        self.reduce_maps = reduce_maps

    def predict_step(self, batch: Any, batch_idx: int) -> BatchOutput:
        return infer_batch(
            self.model, batch, self.keep, self.reconstructions, self.map_dtype, self.reduce_maps
        )


def gather_outputs(outputs: list[Any]) -> list[Any]:
    """Every process's ``Trainer.predict`` outputs, on every process (one all-gather)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return outputs
    everything: list[list[BatchOutput] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(everything, outputs)
    return [item for part in everything for item in (part or [])]


def infer_loader(
    model: AnomalyModel,
    loader: DataLoader[Any],
    options: ScoringOptions | None = None,
    keep: np.ndarray | None = None,
    reconstructions: bool = False,
    trainer: L.Trainer | None = None,
    map_dtype: torch.dtype = torch.float32,
    reduce_maps: MapReducer | None = None,
) -> Inferred:
    """Every image of ``loader`` through :func:`infer_batch` under ``Trainer.predict``.

    Args:
        model: the trained model.
        loader: batches over a dataset of known length.
        options: devices and strategy (ignored when ``trainer`` is given).
        keep: (N,) bool, the images whose map (and reconstruction) to keep; all without it.
        reconstructions: keep the reconstructions of the kept images too.
        trainer: a Trainer to reuse across calls (see :func:`engine.build_predict_trainer`).
        map_dtype: the kept maps' type.
        reduce_maps: keeps what it returns of each batch's kept maps instead of the maps, so
            that a split's maps never gather in memory.
    """
    trainer = trainer or build_predict_trainer(options or ScoringOptions())
    module = InferenceModule(model, keep, reconstructions, map_dtype, reduce_maps)
    start = time.perf_counter()
    outputs = trainer.predict(module, dataloaders=loader) or []
    seconds = time.perf_counter() - start
    parts = gather_outputs([o for o in outputs if isinstance(o, BatchOutput)])
    inferred = assemble(parts, len(loader.dataset))  # type: ignore[arg-type]
    inferred.seconds = seconds
    return inferred


def infer_arrays(
    model: AnomalyModel, images: np.ndarray, batch_size: int = 64, reconstructions: bool = False
) -> Inferred:
    """Images (N, 1, S, S) in [0, 1] through :func:`infer_batch` in this process."""
    start = time.perf_counter()
    outputs = [
        infer_batch(
            model,
            (
                torch.from_numpy(np.ascontiguousarray(images[begin : begin + batch_size])),
                torch.arange(begin, min(begin + batch_size, len(images))),
            ),
            reconstructions=reconstructions,
        )
        for begin in range(0, len(images), batch_size)
    ]
    inferred = assemble(outputs, len(images))
    inferred.seconds = time.perf_counter() - start
    return inferred
