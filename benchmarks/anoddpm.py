"""AnoDDPM speed and quality, side by side in one run.

1. Simplex noise: fields per second (a batch of 64 at 64x64, 6 octaves) for the torch
   implementation and for the ``opensimplex`` package (the reference's algorithm).
2. Scoring throughput, seconds per image:
   - the reference design: the reference's layout as a MONAI UNet (27M parameters here; the
     reference's own UNet has 24M) with attention at 32x32, 16x16 and 8x8,
     T = 2000, depth 200, every DDPM step, batch 1, fp32, CPU noise (untrained weights: the
     time does not depend on them);
   - a trained model of ours with every DDPM step at the reference depth ("full"), batched;
   - the same model with strided DDIM steps ("fast"), batched, as the quick preset scores.
3. AUROC of the full and fast modes of the same trained model on a labelled split (by default
   the synthetic test set), with patient-level 95% intervals.

    python benchmarks/anoddpm.py --runs runs/demo/runs/anoddpm-simplex
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import machine, write_json
from cxr_anomaly.core.config import TrainConfig
from cxr_anomaly.data.datamodule import PreparedData
from cxr_anomaly.evaluation import metrics
from cxr_anomaly.evaluation.split_scores import score_split
from cxr_anomaly.models.anoddpm.lightning_model import AnoDDPM
from cxr_anomaly.models.anoddpm.noise import SimplexParams, simplex_noise_like
from cxr_anomaly.models.registry import build_model
from cxr_anomaly.runtime.checkpoint import load_weights, read_metadata
from cxr_anomaly.runtime.trainer import ScoringOptions

REFERENCE_DESIGN: dict[str, Any] = {
    "channels": [64, 128, 256, 256],
    "attention_resolutions": [32, 16, 8],
    "num_res_blocks": 2,
    "num_head_channels": 64,
    "norm_num_groups": 32,
    "timesteps": 2000,
    "beta_start": 0.00005,
    "beta_end": 0.01,
    "depth": 200,
    "sampler": "ddpm",
    "stride": 1,
    "inference_bf16": False,
    "ema_decay": None,
}


def simplex_speed(repeats: int) -> dict[str, float]:
    """Fields per second: torch (batch of 64) against the opensimplex package (per field)."""
    x = torch.zeros(64, 1, 64, 64)
    generator = torch.Generator().manual_seed(0)
    simplex_noise_like(x, 0, generator)
    start = time.perf_counter()
    for _ in range(repeats):
        simplex_noise_like(x, 0, generator)
    torch_rate = 64 * repeats / (time.perf_counter() - start)
    result = {"torch_fields_per_s": torch_rate}
    try:
        import opensimplex
    except ImportError:
        return result
    params = SimplexParams()
    axis = np.arange(64, dtype=np.float64)
    start = time.perf_counter()
    simplex = opensimplex.OpenSimplex(seed=0)
    frequency = params.frequency
    for _ in range(params.octaves):
        simplex.noise3array(axis / frequency, axis / frequency, np.array([0.0]))
        frequency /= 2
    result["opensimplex_fields_per_s"] = 1.0 / (time.perf_counter() - start)
    return result


def reference_seconds_per_image(noise: str, size: int, images: int) -> tuple[float, float]:
    """Seconds per image of the reference design (batch 1, every step) and its size in M."""
    model = build_model(
        f"anoddpm-{noise}",
        {**REFERENCE_DESIGN, "image_size": size},
        TrainConfig(channels_last=False),
    ).eval()
    assert isinstance(model, AnoDDPM)
    parameters = sum(p.numel() for p in model.unet.parameters()) / 1e6
    x = torch.rand(1, 1, size, size)
    start = time.perf_counter()
    for _ in range(images):
        model.infer(x)
    return (time.perf_counter() - start) / images, parameters


def _with_sampler(model: AnoDDPM, sampler: str, stride: int) -> AnoDDPM:
    model.cfg = dataclasses.replace(model.cfg, sampler=sampler, stride=stride)
    model.config = model.cfg
    return model


def modes(run_dir: Path, split: str, full_images: int, n_boot: int) -> dict[str, Any]:
    """Speed and AUROC of a trained run with every DDPM step and with its fast mode."""
    metadata = read_metadata(run_dir)
    data = PreparedData(metadata.data)
    data.prepare([split])
    view = data.view(split)
    found: dict[str, Any] = {"run": str(run_dir), "split": split, "n_images": len(view)}
    fast_stride = metadata.model_params["stride"]
    assert isinstance(fast_stride, int)
    subset_index = (
        [int(i) for i in np.linspace(0, len(view) - 1, min(full_images, len(view)))]
        if full_images > 0
        else list(range(len(view)))
    )
    fast_scores: dict[str, float] = {}
    for mode, sampler, stride in (("fast", "ddim", fast_stride), ("full", "ddpm", 1)):
        model = _with_sampler(load_weights(run_dir, metadata), sampler, stride)  # type: ignore[arg-type]
        subset = view if mode == "fast" else view.subset(subset_index)
        scored = score_split(model, subset, ScoringOptions(batch_size=32), keep_maps=False)
        image = metrics.image_metrics(
            scored.labels, scored.score, scored.patient_ids, scored.classes, n_boot=n_boot
        )
        found[mode] = {
            "sampler": sampler,
            "stride": stride,
            "depth": model.cfg.depth,
            "network_passes_per_image": len(range(model.cfg.depth - 1, -1, -stride)),
            "images": len(subset),
            "seconds_per_image": scored.seconds / len(subset),
            "auroc": image.auroc,
            "auroc_ci": list(image.auroc_ci),
        }
        if mode == "fast":
            fast_scores = dict(zip(scored.ids, scored.score.tolist(), strict=True))
        else:  # the fast mode on exactly the images the full mode scored
            same = metrics.image_metrics(
                scored.labels,
                np.array([fast_scores[i] for i in scored.ids]),
                scored.patient_ids,
                scored.classes,
                n_boot=n_boot,
            )
            found["fast_on_full_images"] = {"auroc": same.auroc, "auroc_ci": list(same.auroc_ci)}
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs",
        default="runs/demo/runs/anoddpm-gaussian,runs/demo/runs/anoddpm-simplex",
        help="trained AnoDDPM run folders",
    )
    parser.add_argument("--split", default="test")
    parser.add_argument("--reference-images", type=int, default=2)
    parser.add_argument(
        "--full-images", type=int, default=0, help="score only this many images in full mode"
    )
    parser.add_argument("--n-boot", type=int, default=500)
    parser.add_argument("--json", default="benchmarks/results/anoddpm.json")
    args = parser.parse_args(argv)

    payload: dict[str, Any] = {
        "machine": machine(),
        "simplex": simplex_speed(repeats=3),
        "runs": [],
    }
    print(
        f"simplex fields/s (64 fields of 64x64, 6 octaves): torch "
        f"{payload['simplex']['torch_fields_per_s']:.1f}, opensimplex package "
        f"{payload['simplex'].get('opensimplex_fields_per_s', float('nan')):.2f}"
    )
    for run in (Path(r) for r in args.runs.split(",")):
        noise = str(read_metadata(run).model_params["noise"])
        size = read_metadata(run).data.size
        ref_seconds, ref_params = reference_seconds_per_image(noise, size, args.reference_images)
        found = modes(run, args.split, args.full_images, args.n_boot)
        found["reference_design"] = {"seconds_per_image": ref_seconds, "parameters_m": ref_params}
        payload["runs"].append(found)
        print(f"\n{run} ({noise} noise), split {args.split}, {found['n_images']} images")
        print(
            f"{'mode':<28} {'passes/img':>10} {'s/image':>9} {'speed-up':>9} {'AUROC [95% CI]':>24}"
        )
        print(f"{'reference design (batch 1)':<28} {200:>10} {ref_seconds:>9.3f} {1.0:>9.1f}")
        for mode in ("full", "fast"):
            m = found[mode]
            ci = m["auroc_ci"]
            label = f"{mode} ({m['sampler']}, batched)"
            print(
                f"{label:<28} {m['network_passes_per_image']:>10} "
                f"{m['seconds_per_image']:>9.3f} {ref_seconds / m['seconds_per_image']:>9.1f} "
                f"{m['auroc']:>8.3f} [{ci[0]:.3f}, {ci[1]:.3f}] on {m['images']}"
            )
        same = found["fast_on_full_images"]
        print(
            f"{'fast, on the full images':<28} {'':>10} {'':>9} {'':>9} {same['auroc']:>8.3f} "
            f"[{same['auroc_ci'][0]:.3f}, {same['auroc_ci'][1]:.3f}] on {found['full']['images']}"
        )
    print(f"wrote {write_json(args.json, payload)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
