"""Peak memory and time of evaluating a split, as the split grows: memory must stay flat.

Each split size runs in its own subprocess: synthetic phantoms (half normal, half with a lesion
and its mask) are prepared into a fresh cache, then an untrained model scores the split and the
evaluation measures it as ``evaluate`` does: image metrics with bootstrap intervals, pixel
metrics, and the trivial reference detectors fitted on the training images. A thread samples
the process's anonymous resident memory (``RssAnon``: what the evaluation allocates, not the
memory-mapped image cache) every few milliseconds; the peak above the level before scoring is
what the evaluation held.

    python benchmarks/eval_memory.py --images 1000,4000,16000 \\
        --json benchmarks/results/eval-memory-cpu.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import machine, write_json


def rss_anon_mb() -> float:
    """This process's anonymous resident memory in MiB (Linux ``/proc/self/status``)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no RssAnon in /proc/self/status (Linux only)")


class PeakSampler:
    """The highest :func:`rss_anon_mb` seen while the ``with`` block runs."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_anon_mb())
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakSampler:
        self.peak = rss_anon_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon_mb())


def _measure(n_images: int, args: argparse.Namespace) -> dict[str, Any]:
    """Runs in the child process: prepare, then evaluate one split of ``n_images``."""
    import torch

    from cxr_anomaly.core.config import DataConfig
    from cxr_anomaly.data.datamodule import PreparedData
    from cxr_anomaly.evaluation.references import reference_scores
    from cxr_anomaly.evaluation.split_scores import evaluate_scored, score_split
    from cxr_anomaly.models.presets import load_preset
    from cxr_anomaly.models.registry import build_model
    from cxr_anomaly.runtime.trainer import ScoringOptions

    torch.set_num_threads(args.threads)
    normal = n_images // 2
    spec = (
        f"synthetic:n_train={args.train_images},n_val_normal=16,"
        f"n_test_normal={normal},n_test_abnormal={n_images - normal}"
    )
    with tempfile.TemporaryDirectory() as cache:
        data = PreparedData(DataConfig(spec=spec, size=args.size, cache_dir=cache, workers=2))
        data.prepare()
        view = data.view("test")
        params = load_preset(args.model, "quick").model_params
        torch.manual_seed(0)
        model = build_model(args.model, {**params, "image_size": args.size})
        before = rss_anon_mb()
        start = time.perf_counter()
        with PeakSampler() as sampler:
            scored = score_split(model, view, ScoringOptions(batch_size=args.batch_size))
            evaluation = evaluate_scored(scored, n_boot=args.n_boot)
            references = reference_scores(data, view, [], n_boot=args.n_boot)
        seconds = time.perf_counter() - start
    pixel = evaluation.pixel
    return {
        "images": len(view),
        "size": args.size,
        "model": args.model,
        "seconds": round(seconds, 2),
        "rss_anon_before_mb": round(before, 1),
        "peak_rss_anon_mb": round(sampler.peak, 1),
        "evaluation_peak_mb": round(sampler.peak - before, 1),
        "kept_pixels": int(sum(image.values.size for image in scored.pixels)),
        "auroc": round(evaluation.image.auroc, 4),
        "pixel_auroc": None if pixel is None else round(pixel.pixel_auroc, 4),
        "histogram_auroc": round(references["histogram"].entry["auroc"], 4),
    }


def _run_child(n_images: int, argv: list[str]) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", str(n_images), *argv]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        error = out.stderr.strip().splitlines()[-1] if out.stderr else "failed"
        return {"images": n_images, "error": error}
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="1000,4000,16000", help="split sizes")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--model", default="vaegan", help="scored untrained, quick preset")
    parser.add_argument("--train-images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default="benchmarks/results/eval-memory-cpu.json")
    parser.add_argument("--child", type=int, metavar="IMAGES")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.child:
        print(json.dumps(_measure(args.child, args)))
        return 0
    passthrough = [
        f"--size={args.size}",
        f"--model={args.model}",
        f"--train-images={args.train_images}",
        f"--batch-size={args.batch_size}",
        f"--n-boot={args.n_boot}",
        f"--threads={args.threads}",
    ]
    rows = [_run_child(int(n), passthrough) for n in args.images.split(",")]
    columns = [
        "images",
        "seconds",
        "evaluation_peak_mb",
        "peak_rss_anon_mb",
        "kept_pixels",
        "auroc",
        "pixel_auroc",
        "histogram_auroc",
        "error",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    peaks: dict[int, float] = {
        row["images"]: row["evaluation_peak_mb"] for row in rows if "evaluation_peak_mb" in row
    }
    growth = None
    if peaks.get(4000) and peaks.get(16000):
        growth = round(peaks[16000] / peaks[4000], 3)
        print(f"evaluation peak memory, 16k / 4k images: {growth}x")
    payload = {"machine": machine(), "args": vars(args), "rows": rows, "growth_4k_to_16k": growth}
    print(f"wrote {write_json(Path(args.json), payload)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
