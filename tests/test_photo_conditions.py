"""scripts/measure-photo-conditions.py: the two measures, and a run on real photos from the regression set."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from edgefmnist.runtime.photo_set import photo_split
from helpers import REGRESSION_SET

SCRIPT = Path(__file__).parent.parent / "scripts" / "measure-photo-conditions.py"

spec = importlib.util.spec_from_file_location("measure_photo_conditions", SCRIPT)
assert spec is not None and spec.loader is not None
conditions = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conditions)


def test_edges_reached_counts_the_edges_the_mask_comes_within_two_pixels_of() -> None:
    mask = np.zeros((72, 96), bool)
    mask[20:50, 30:60] = True
    assert conditions.edges_reached(mask) == 0
    mask[1:50, 30:95] = True  # within 2 px of the top and the right edge
    assert conditions.edges_reached(mask) == 2
    assert conditions.edges_reached(np.ones((72, 96), bool)) == 4


def test_background_texture_is_low_on_plain_paper_and_high_on_a_textured_floor() -> None:
    rng = np.random.default_rng(0)
    mask = np.zeros((72, 96), bool)
    mask[20:50, 30:60] = True
    plain = np.full((72, 96, 3), 200, np.uint8)
    floor = rng.integers(60, 200, (72, 96, 3)).astype(np.uint8)
    for picture in (plain, floor):
        picture[mask] = (40, 40, 120)  # the garment, outside the measured band
    assert conditions.background_texture(plain, mask) < 1.0
    assert conditions.background_texture(floor, mask) > 20.0


def renamed_copies(target: Path, count: int) -> None:
    """Regression-set photos of pants and dresses, renamed so that both halves of photo_split get some."""
    for source, folder in (("pants", "Trouser"), ("dress", "Dress")):
        (target / folder).mkdir(parents=True)
        for index, photo in enumerate(sorted((REGRESSION_SET / source).glob("*.jpg"))[:count]):
            shutil.copyfile(photo, target / folder / f"{source}-{index}.jpg")


def run(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(folder), "--json"], capture_output=True, text=True)


def test_a_run_on_real_photos_puts_each_half_into_the_bands(tmp_path: Path) -> None:
    renamed_copies(tmp_path, 12)
    halves = [photo_split(p.name) for p in tmp_path.glob("*/*.jpg")]
    assert halves.count("choice") >= 4 and halves.count("report") >= 4
    result = run(tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    low, high = report["texture_bounds"]
    assert low <= high
    for half in ("choice", "report"):
        groups = report["halves"][half]
        for kind in ("texture", "edges"):
            assert sum(band["photos"] for band in groups[kind].values()) == halves.count(half)
        by_class = groups["by_source_class"]
        assert set(by_class) == {"Trouser", "Dress"}
        busy = sum(c["busy"]["photos"] for c in by_class.values())
        assert busy == groups["texture"]["busy"]["photos"]
        assert busy + sum(c["others"]["photos"] for c in by_class.values()) == halves.count(half)
    choice = report["halves"]["choice"]["texture"]
    assert choice["busy"]["photos"] <= halves.count("choice") // 3 + 1  # above two thirds of the choice half


@pytest.mark.parametrize(
    "make, message",
    [
        (
            "report_half_only",
            "all 3 in-domain photos are in the report half, and the texture bands are set on the choice half",
        ),
        ("out_of_domain_only", "no in-domain photo (a labels.csv with accepted classes, or class folders)"),
    ],
)
def test_a_set_it_cannot_measure_is_refused_in_one_line(tmp_path: Path, make: str, message: str) -> None:
    folder = tmp_path / ("Trouser" if make == "report_half_only" else "hat")
    folder.mkdir()
    for photo in sorted((REGRESSION_SET / "pants").glob("*.jpg"))[:3]:  # the regression set is all report half
        shutil.copyfile(photo, folder / photo.name)
    result = run(tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == f"{tmp_path}: {message}"


def test_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    result = run(tmp_path / "nowhere")
    assert result.returncode == 1 and result.stderr.strip() == f"{tmp_path / 'nowhere'}: no such folder"
