"""Training throughput with 1 and 2 processes (DDP, gloo on the CPU; NCCL on GPUs).

Each configuration trains a model for a fixed number of epochs on the synthetic data in a fresh
process group and reports images per second over the epochs after the first (warm-up), for the
whole job (all processes together). Threads are divided between the processes so that both
configurations use the same cores.

    python benchmarks/scaling.py --models vaegan,bigan --processes 1,2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import machine, write_json
from cxr_anomaly.core.config import Settings
from cxr_anomaly.models.registry import model_names


def _child(model: str, processes: int, epochs: int, n_train: int, out: Path) -> None:
    """Runs (in every rank): train ``model`` and write the throughput from rank 0."""
    import lightning as L

    from cxr_anomaly.core.config import DataConfig
    from cxr_anomaly.jobs.training import train
    from cxr_anomaly.models.presets import build_run_config

    class EpochTimer(L.Callback):
        def __init__(self) -> None:
            self.starts: list[float] = []

        def on_train_epoch_start(self, *args: Any) -> None:
            self.starts.append(time.perf_counter())

        def on_train_end(self, trainer: L.Trainer, *args: Any) -> None:
            self.starts.append(time.perf_counter())

    spec = f"synthetic:n_train={n_train},n_val_normal=16,n_test_normal=8,n_test_abnormal=8"
    data = DataConfig(spec=spec, cache_dir=str(out / "cache"))
    overrides: Settings = {
        "max_epochs": epochs,
        "accelerator": "auto",
        "devices": processes,
        "strategy": "ddp" if processes > 1 else "auto",
    }
    config = build_run_config(model, "quick", data, overrides)
    timer = EpochTimer()
    result = train(config, out / f"{model}-{processes}", progress=False, callbacks=[timer])
    if timer.starts and result.model.trainer.is_global_zero:
        seconds = timer.starts[-1] - timer.starts[1]
        batch = config.train.batch_size
        per_epoch = (n_train // (batch * processes)) * batch * processes
        (out / f"{model}-{processes}.json").write_text(
            json.dumps({"images_per_s": per_epoch * (epochs - 1) / seconds, "seconds": seconds})
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(model_names()))
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=512)
    parser.add_argument("--json", default="benchmarks/results/scaling.json")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        model, processes, out = args.child
        _child(model, int(processes), args.epochs, args.n_train, Path(out))
        return 0
    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            for processes in (int(p) for p in args.processes.split(",")):
                env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // processes))}
                command = [
                    sys.executable,
                    __file__,
                    "--child",
                    model,
                    str(processes),
                    tmp,
                    f"--epochs={args.epochs}",
                    f"--n-train={args.n_train}",
                ]
                done = subprocess.run(command, env=env, capture_output=True, text=True)
                result_file = Path(tmp) / f"{model}-{processes}.json"
                row: dict[str, Any] = {
                    "model": model,
                    "processes": processes,
                    "threads_per_process": env["OMP_NUM_THREADS"],
                }
                if done.returncode == 0 and result_file.is_file():
                    row.update(json.loads(result_file.read_text()))
                else:
                    row["error"] = (done.stderr.strip().splitlines() or ["failed"])[-1]
                rows.append(row)
                print(row, flush=True)

    print(f"{'model':<18} {'processes':>9} {'images/s':>9}")
    for row in rows:
        ips = row.get("images_per_s")
        print(
            f"{row['model']:<18} {row['processes']:>9} {ips if ips is None else round(ips, 1)!s:>9}"
        )
    path = write_json(args.json, {"machine": machine(), "args": vars(args), "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
