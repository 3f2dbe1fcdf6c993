"""A distributed job for tests/test_distributed.py: run as ``python ddp_job.py OUT DEVICES``.

Trains every model for a few steps with DDP on the CPU (gloo), each rank dumping its final
weights, then scores the test split of one model with the same number of processes. Lightning's
launcher starts the other ranks by running this script again.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from cxr_anomaly.data.datamodule import PreparedData
from cxr_anomaly.data.phantoms import make_phantom
from cxr_anomaly.evaluation.split_scores import score_split
from cxr_anomaly.jobs.predict import run_predict
from cxr_anomaly.jobs.training import train
from cxr_anomaly.runtime.checkpoint import load_weights
from cxr_anomaly.runtime.trainer import ScoringOptions, is_global_zero
from tiny import MODEL_NAMES, tiny_run


def _dump_weights(model: torch.nn.Module, folder: Path) -> None:
    """Each rank saves its final weights and buffers (EMA, fitted Gaussians, calibration)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    save_file(state, str(folder / f"rank{rank}.safetensors"))


def _input_files(folder: Path) -> None:
    """A few PNG phantoms and one unreadable file for ``predict`` (made once, by rank 0)."""
    if folder.exists():
        return
    folder.mkdir(parents=True)
    for seed in range(7):
        image = make_phantom(64, seed, "nodule" if seed % 2 else None).image
        Image.fromarray((image * 255).astype(np.uint8)).save(folder / f"p{seed}.png")
    (folder / "broken.png").write_bytes(b"not an image")


def main() -> None:
    out, devices = Path(sys.argv[1]), int(sys.argv[2])
    _input_files(out / "inputs")
    for name in MODEL_NAMES:
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        config = tiny_run(name, out / "cache", epochs=1)
        config.train.devices = devices
        config.train.strategy = "ddp" if devices > 1 else "auto"
        result = train(config, folder / "run", progress=False)
        _dump_weights(result.model, folder)
    # Score the test split of the first model's run with `devices` processes.
    run_dir = out / MODEL_NAMES[0] / "run"
    model = load_weights(run_dir)
    data = PreparedData(tiny_run(MODEL_NAMES[0], out / "cache").data)
    data.prepare(["test"])
    options = ScoringOptions(
        batch_size=3, accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto"
    )
    scored = score_split(model, data.view("test"), options)
    run_predict(run_dir, [out / "inputs"], out / f"predict-{devices}", options=options)
    if is_global_zero():
        scored.write_csv(out / f"scores-{devices}.csv")
        torch.save({"world": devices}, out / f"done-{devices}.pt")


if __name__ == "__main__":
    main()
