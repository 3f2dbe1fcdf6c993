"""The RSNA sample's Lung Opacity images: each model's map and regions beside the radiologists'
boxes (a figure; five images are no statistic).

For each run (``--run NAME RUN_DIR``, repeatable) every ``Lung Opacity`` image of the RSNA
sample is scored as ``predict --regions`` scores it; the figure draws, per model (rows) and
image (columns), the radiograph with the map in red, the model's regions in yellow and the RSNA
boxes in cyan. The JSON lists, per model and image, the score and decision, whether the map's
maximum lies inside an RSNA box (the pointing game of one image), the best IoU of a region
with an RSNA box, and the out-of-distribution flag.

    python benchmarks/rsna_regions.py --run AnatPaste runs/anatpaste --run BiGAN runs/bigan \\
        --out docs/rsna_regions.png --json benchmarks/results/rsna-regions.json
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from common import data_root, machine, portable, write_json
from cxr_anomaly.jobs.predict import Prediction, ScoringModel, load_model
from cxr_anomaly.postprocess.regions import Region
from cxr_anomaly.reporting import viz

Box = tuple[int, int, int, int]
CYAN = (0.0, 0.9, 1.0)
PANEL_SIDE = 384


def opacity_boxes(sample: Path) -> dict[str, list[Box]]:
    """The RSNA boxes (x, y, width, height) of every Lung Opacity image of ``sample``."""
    boxes: dict[str, list[Box]] = defaultdict(list)
    with open(sample / "stage_2_train_labels.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["Target"] == "1":
                box = tuple(round(float(row[k])) for k in ("x", "y", "width", "height"))
                boxes[row["patientId"]].append(box)  # type: ignore[arg-type]
    return dict(sorted(boxes.items()))


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (x, y, width, height)."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    overlap = max(0, width) * max(0, height)
    union = a[2] * a[3] + b[2] * b[3] - overlap
    return overlap / union if union else 0.0


def peak_inside(prediction: Prediction, shape: tuple[int, int], boxes: list[Box]) -> bool:
    """Whether the map's maximum (placed on the original) falls inside one of ``boxes``."""
    assert prediction.anomaly_map is not None
    amap = prediction.anomaly_map
    row, col = np.unravel_index(int(np.argmax(amap)), amap.shape)
    y = (row + 0.5) * shape[0] / amap.shape[0]
    x = (col + 0.5) * shape[1] / amap.shape[1]
    return any(bx <= x < bx + bw and by <= y < by + bh for bx, by, bw, bh in boxes)


def panel(
    model: ScoringModel,
    prediction: Prediction,
    original: np.ndarray,
    regions: list[Region],
    truth: list[Box],
) -> np.ndarray:
    """One image: the map in red, the model's regions in yellow, the RSNA boxes in cyan."""
    assert prediction.anomaly_map is not None
    factor = PANEL_SIDE / max(original.shape)
    drawn = viz.radiograph_overlay(
        original,
        prediction.anomaly_map,
        model.post_processor.map_floor,
        model.post_processor.map_scale or None,
        [(r.x, r.y, r.width, r.height) for r in regions],
        max_side=PANEL_SIDE,
    )
    for box in truth:
        viz.outline_box(drawn, box, factor, CYAN)
    return viz.resized(drawn, (PANEL_SIDE, PANEL_SIDE), smooth=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run", nargs=2, action="append", metavar=("NAME", "RUN_DIR"), required=True
    )
    parser.add_argument("--sample", default=str(data_root() / "rsna" / "sample"))
    parser.add_argument("--out", default="docs/rsna_regions.png")
    parser.add_argument("--json", default="benchmarks/results/rsna-regions.json")
    args = parser.parse_args()
    sample = Path(args.sample)
    truth = opacity_boxes(sample)
    files = [sample / "stage_2_train_images" / f"{patient}.dcm" for patient in truth]
    rows, found = [], {}
    for name, run in args.run:
        model = load_model(run)
        panels, labels, per_image, pointed, ious = [], [], {}, 0, []
        for path, prediction in zip(files, model.predict([str(f) for f in files]), strict=True):
            original = model.read_original(path)
            regions = model.regions(prediction, original.shape)
            boxes = truth[path.stem]
            best = max(
                (iou((r.x, r.y, r.width, r.height), b) for r in regions for b in boxes), default=0.0
            )
            inside = peak_inside(prediction, original.shape, boxes)
            per_image[path.stem] = {
                "score": prediction.score,
                "decision": prediction.decision,
                "out_of_distribution": prediction.out_of_distribution,
                "rsna_boxes": boxes,
                "regions": [[r.x, r.y, r.width, r.height, round(r.peak, 4)] for r in regions],
                "peak_inside_a_box": inside,
                "best_iou": round(best, 3),
            }
            pointed += inside
            ious.append(round(best, 3))
            panels.append(panel(model, prediction, original, regions, boxes))
            labels.append(f"{name}: {prediction.decision}, IoU {best:.2f}")
        found[name] = {"run": portable(str(Path(run).resolve())), "images": per_image}
        rows.append(viz.labelled_panels(panels, labels, [], scale=1))
        print(
            f"{name}: map peak inside an RSNA box in {pointed} of {len(per_image)}; "
            f"best IoU per image {ious}"
        )
    caption = ["RSNA sample, Lung Opacity: map in red, model regions yellow, RSNA boxes cyan"]
    width = max(r.shape[1] for r in rows)
    figure = np.concatenate(
        [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    )
    header = viz.labelled_panels([np.ones((1, width, 3))], [""], caption, scale=1)[:-20]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([header, figure])).save(args.out)
    write_json(args.json, {"machine": machine(), "sample": portable(str(sample)), "models": found})
    print(f"wrote {args.out} and {args.json}")


if __name__ == "__main__":
    main()
