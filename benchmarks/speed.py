"""Training and scoring throughput and peak memory of each model, preset, precision and size.

Each configuration runs in its own subprocess so that its peak memory is its own. Training
throughput is measured over Lightning training steps after warm-up; scoring throughput over
``model.infer`` batches (the path ``evaluate`` and ``predict`` use). ``rsna_epoch_s`` is the
time one epoch of the reference protocol's RSNA training set (70% of its 8,851 normal images)
would take at the measured training throughput.

    python benchmarks/speed.py                                  # quick presets, fp32 and bf16
    python benchmarks/speed.py --presets quick,paper --json benchmarks/results/speed.json
    python benchmarks/speed.py --sizes 64,128,256 --precisions bf16-mixed --batch-size 8 \
        --train-steps 3 --warmup 1 --score-batch 8 --score-batches 2 \
        --json benchmarks/results/speed-sizes-cpu.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

from common import machine, write_json
from cxr_anomaly.core.config import Settings
from cxr_anomaly.models.registry import model_names

RSNA_TRAINING_IMAGES = 6196  # 70% of RSNA's 8,851 "Normal" images (the reference protocol)


def _measure(model_name: str, preset: str, precision: str, args: argparse.Namespace) -> dict:
    """Runs in the child process: measure one configuration."""
    import lightning as L
    import numpy as np
    import torch

    from cxr_anomaly.core.config import DataConfig
    from cxr_anomaly.core.hardware import resolve_precision
    from cxr_anomaly.models.presets import build_run_config
    from cxr_anomaly.models.registry import build_model

    torch.set_flush_denormal(bool(args.flush_denormal))
    data = DataConfig(spec="synthetic", size=args.size)
    overrides: dict[str, Any] = {"precision": precision}
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    model_overrides: Settings = (
        {"inference_bf16": precision == "bf16-mixed"} if "anoddpm" in model_name else {}
    )
    config = build_run_config(model_name, preset, data, overrides, model_overrides)
    torch.manual_seed(0)
    model = build_model(config.model, config.model_params, config.train)
    batch = config.train.batch_size
    device = "cuda" if torch.cuda.is_available() else "cpu"
    images = torch.rand(batch * (args.train_steps + args.warmup), 1, args.size, args.size)
    dataset = torch.utils.data.TensorDataset(images, torch.arange(len(images)))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, drop_last=True)

    class StepTimer(L.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_train_batch_start(self, *a: Any) -> None:
            if device == "cuda":
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())

    timer = StepTimer()
    trainer = L.Trainer(
        accelerator=device,
        devices=1,
        precision=resolve_precision(precision),  # type: ignore[arg-type]
        max_steps=-1,
        max_epochs=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(model, train_dataloaders=loader)
    # Median step time: robust to other jobs sharing this machine's cores.
    durations = np.diff(timer.times[args.warmup :])
    train_ips = batch / float(np.median(durations)) if len(durations) else float("nan")

    model = model.to(device)
    score_batch = args.score_batch
    x = torch.rand(score_batch, 1, args.size, args.size)
    model.infer(x[: min(4, score_batch)])
    batch_times = []
    for _ in range(args.score_batches):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        model.infer(x)
        if device == "cuda":
            torch.cuda.synchronize()
        batch_times.append(time.perf_counter() - start)
    score_ips = score_batch / float(np.median(batch_times))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    return {
        "model": model_name,
        "preset": preset,
        "precision": resolve_precision(precision),
        "size": args.size,
        "device": device,
        "batch_size": batch,
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "train_images_per_s": round(train_ips, 2),
        "rsna_epoch_s": round(RSNA_TRAINING_IMAGES / train_ips, 1),
        "score_images_per_s": round(score_ips, 3),
        "peak_memory_mb": round(peak_mb, 1),
    }


def _run_child(model: str, preset: str, precision: str, size: int, argv: list[str]) -> dict:
    command = [
        sys.executable, __file__, "--child", model, preset, precision, f"--size={size}", *argv
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {
            "model": model,
            "preset": preset,
            "precision": precision,
            "size": size,
            "error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed",
        }
    return json.loads(out.stdout.strip().splitlines()[-1])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(model_names()))
    parser.add_argument("--presets", default="quick")
    parser.add_argument("--precisions", default="32-true,bf16-mixed")
    parser.add_argument("--sizes", default="64", help="image sides, comma-separated")
    parser.add_argument("--size", type=int, default=64, help=argparse.SUPPRESS)  # per child
    parser.add_argument("--batch-size", type=int, default=0, help="0 = the preset's")
    parser.add_argument("--train-steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--score-batch", type=int, default=32)
    parser.add_argument("--score-batches", type=int, default=3)
    parser.add_argument("--json", default="benchmarks/results/speed.json")
    parser.add_argument("--flush-denormal", type=int, default=1)
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "PRESET", "PRECISION"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.child:
        model, preset, precision = args.child
        print(json.dumps(_measure(model, preset, precision, args)))
        return 0
    passthrough = [
        f"--batch-size={args.batch_size}",
        f"--train-steps={args.train_steps}",
        f"--warmup={args.warmup}",
        f"--score-batch={args.score_batch}",
        f"--score-batches={args.score_batches}",
        f"--flush-denormal={args.flush_denormal}",
    ]
    rows = [
        _run_child(model, preset, precision, int(size), passthrough)
        for model in args.models.split(",")
        for preset in args.presets.split(",")
        for precision in args.precisions.split(",")
        for size in args.sizes.split(",")
    ]
    columns = [
        "model",
        "preset",
        "precision",
        "size",
        "batch_size",
        "parameters_m",
        "train_images_per_s",
        "rsna_epoch_s",
        "score_images_per_s",
        "peak_memory_mb",
        "error",
    ]
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(str(row.get(c, "")) for c in columns))
    path = write_json(args.json, {"machine": machine(), "args": vars(args), "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
