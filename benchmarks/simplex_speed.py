"""Benchmark simplex noise fields per second: our torch port against the ``opensimplex`` package.

A "field" is one AnoDDPM noise image: 3D OpenSimplex summed over octaves (default 6 octaves,
persistence 0.8, frequency 64) at ``size x size`` pixels. Rows:

- ``torch float32``: :func:`simplex_noise_like` on a float32 batch (the fast path: per-vertex math
  in float32, lattice location and branch decisions in float64);
- ``torch float64``: the same on a float64 batch (everything in float64; the golden path);
- ``opensimplex``: the package's ``noise3array``, one ``OpenSimplex(seed)`` per field (a batch needs
  one field per image), octaves summed like the reference's ``rand_3d_fixed_T_octaves``. Without
  numba the package runs in pure Python, so it is timed on ``--package-fields`` fields and the
  batch time is extrapolated from the per-field time (marked as such).

Times are the median over ``--repeats`` runs after one warm-up; wall and CPU seconds are both
reported since wall time on a shared machine depends on its load (the load average is recorded).

Usage::

    python benchmarks/simplex_speed.py [--batch 64] [--size 64] [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import statistics
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import cpu_model, machine, write_json
from cxr_anomaly.models.anoddpm.noise import SimplexParams, simplex_noise_like

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "simplex_speed.json"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], object], repeats: int, device: torch.device) -> dict[str, float]:
    """Median and min wall seconds, and median CPU seconds, of ``fn`` after one warm-up call."""
    fn()
    _sync(device)
    walls, cpus = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu_start)
    return {
        "wall_s": statistics.median(walls),
        "wall_min_s": min(walls),
        "cpu_s": statistics.median(cpus),
    }


def _package_field(seed: int, t: int, size: int, params: SimplexParams) -> np.ndarray:
    """One field with the opensimplex package, as the reference's ``rand_3d_fixed_T_octaves``."""
    import opensimplex

    noise = opensimplex.OpenSimplex(seed)
    out = np.zeros((1, size, size))
    coords = np.arange(size, dtype=np.float64)
    frequency, amplitude = params.frequency, 1.0
    for _ in range(params.octaves):
        out += amplitude * noise.noise3array(
            coords / frequency, coords / frequency, np.array([t / frequency])
        )
        frequency /= 2
        amplitude *= params.persistence
    return out


def _machine(device: torch.device) -> dict[str, Any]:
    try:
        opensimplex: str | None = metadata.version("opensimplex")
    except metadata.PackageNotFoundError:
        opensimplex = None
    return machine(
        device=str(device),
        numba_installed=importlib.util.find_spec("numba") is not None,
        opensimplex=opensimplex,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print a table and write the JSON results.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        Process exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--batch", type=int, default=64, help="fields per batch")
    parser.add_argument("--size", type=int, default=64, help="field height and width")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per torch row")
    parser.add_argument(
        "--package-fields", type=int, default=2, help="fields timed with opensimplex (0: skip)"
    )
    parser.add_argument("--device", default="cpu", help="torch device for our implementation")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=None,
        help="torch intra-op thread counts to time (default: 1 and torch's default)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    default_threads = torch.get_num_threads()
    thread_counts = args.threads or sorted({1, default_threads})
    params = SimplexParams()
    t = torch.randint(0, 1000, (args.batch,), generator=torch.Generator().manual_seed(args.seed))
    rows: list[dict[str, Any]] = []

    for threads in thread_counts:
        torch.set_num_threads(threads)
        for dtype in (torch.float32, torch.float64):
            x = torch.zeros(args.batch, 1, args.size, args.size, dtype=dtype, device=device)
            gen = torch.Generator(device=device).manual_seed(args.seed)
            run = functools.partial(simplex_noise_like, x, t.to(device), gen)
            timing = _time(run, args.repeats, device)
            rows.append(
                {
                    "implementation": f"torch {str(dtype).removeprefix('torch.')}",
                    "threads": threads,
                    "fields_timed": args.batch * args.repeats,
                    "batch_wall_s": timing["wall_s"],
                    "batch_wall_min_s": timing["wall_min_s"],
                    "batch_cpu_s": timing["cpu_s"],
                    "fields_per_s": args.batch / timing["wall_s"],
                    "extrapolated": False,
                }
            )
    torch.set_num_threads(default_threads)

    if args.package_fields > 0:
        if importlib.util.find_spec("opensimplex") is None:
            print("opensimplex is not installed: skipping the package row")
        else:
            n = args.package_fields
            seeds = list(range(args.seed, args.seed + n))
            ts = t.tolist()

            def run_package() -> None:
                for i, s in enumerate(seeds):
                    _package_field(s, ts[i % len(ts)], args.size, params)

            timing = _time(run_package, 1, torch.device("cpu"))
            per_field = timing["wall_s"] / n
            rows.append(
                {
                    "implementation": "opensimplex noise3array",
                    "threads": 1,
                    "fields_timed": n,
                    "batch_wall_s": per_field * args.batch,
                    "batch_wall_min_s": timing["wall_min_s"] / n * args.batch,
                    "batch_cpu_s": timing["cpu_s"] / n * args.batch,
                    "fields_per_s": 1.0 / per_field,
                    "extrapolated": True,
                }
            )

    base = rows[0]["fields_per_s"]
    print(
        f"Simplex noise, batch {args.batch} x {args.size}x{args.size}, {params.octaves} octaves "
        f"(persistence {params.persistence}, frequency {params.frequency}); device {device}; "
        f"{cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    )
    header = (
        f"{'implementation':24s} {'threads':>7s} {'fields/s':>9s} {'batch wall':>11s} "
        f"{'batch CPU':>10s} {'vs 1st row':>10s}"
    )
    print(header + "  note")
    print("-" * (len(header) + 30))
    for row in rows:
        note = f"extrapolated from {row['fields_timed']} fields" if row["extrapolated"] else ""
        print(
            f"{row['implementation']:24s} {row['threads']:7d} {row['fields_per_s']:9.1f} "
            f"{row['batch_wall_s'] * 1e3:9.1f}ms {row['batch_cpu_s'] * 1e3:8.1f}ms "
            f"{row['fields_per_s'] / base:9.4f}x  {note}"
        )

    payload = {
        "benchmark": "simplex_speed",
        "batch": args.batch,
        "size": args.size,
        "params": {
            "octaves": params.octaves,
            "persistence": params.persistence,
            "frequency": params.frequency,
        },
        "repeats": args.repeats,
        "machine": _machine(device),
        "rows": rows,
    }
    write_json(args.json, payload)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
