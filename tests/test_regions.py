"""Map regions as boxes on the original image, and predict's full-resolution overlays."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_anomaly.cli import main
from cxr_anomaly.data.phantoms import make_phantom
from cxr_anomaly.jobs.predict import REGIONS_FILE, load_model
from cxr_anomaly.jobs.training import train
from cxr_anomaly.postprocess.regions import map_regions
from tiny import tiny_run


def test_regions_are_components_above_the_threshold_in_original_pixels() -> None:
    amap = np.zeros((8, 8))
    amap[1:3, 1:3] = 4.0  # a 2 x 2 blob, peak 4
    amap[5, 4:7] = 9.0  # a 1 x 3 bar, peak 9
    amap[7, 0] = 0.5  # below the threshold
    found = map_regions(amap, 1.0, (80, 160))  # rows scale by 10, columns by 20
    assert [(r.x, r.y, r.width, r.height, r.peak, r.map_pixels) for r in found] == [
        (80, 50, 60, 10, 9.0, 3),
        (20, 10, 40, 20, 4.0, 4),
    ]
    assert map_regions(amap, 10.0, (80, 160)) == []


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("regions") / "run"
    train(tiny_run("vaegan", out.parent / "cache"), out, progress=False)
    return out


def test_predict_regions_and_overlays_at_the_original_resolution(
    run_dir: Path, tmp_path: Path
) -> None:
    image = make_phantom(200, 3, "nodule").image[:, 20:180]  # 200 x 160: not square
    source = tmp_path / "in" / "wide.png"
    source.parent.mkdir()
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(source)
    out = tmp_path / "out"
    code = main(["-q", "predict", str(run_dir), str(source), "--out", str(out), "--regions"])
    assert code == 0
    (overlay,) = (out / "overlays").iterdir()
    drawn = np.asarray(Image.open(overlay))
    assert drawn.shape[0] > 200  # the radiograph's 200 rows, under a caption
    with open(out / REGIONS_FILE, newline="") as handle:
        rows = list(csv.DictReader(handle))
    model = load_model(run_dir)
    (prediction,) = model.predict([str(source)])
    expected = model.regions(prediction, (200, 160))
    assert len(rows) == len(expected) >= 1
    for row, region in zip(rows, expected, strict=True):
        assert row["path"] == str(source)
        assert (int(row["x"]), int(row["y"]), int(row["width"]), int(row["height"])) == (
            region.x,
            region.y,
            region.width,
            region.height,
        )
        assert region.x >= 0 and region.x + region.width <= 160
        assert region.y >= 0 and region.y + region.height <= 200
        assert region.peak > model.post_processor.map_scale
