"""scripts/measure-photo-conditions.py: the two measures, and a run on real photos from the regression set."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from edgefmnist.runtime.photo_eval import photo_split

SCRIPT = Path(__file__).parent.parent / "scripts" / "measure-photo-conditions.py"
PHOTOS = Path(__file__).parent / "data" / "photos"

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
        for index, photo in enumerate(sorted((PHOTOS / source).glob("*.jpg"))[:count]):
            shutil.copyfile(photo, target / folder / f"{source}-{index}.jpg")


def run(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(folder), "--json"], capture_output=True, text=True)


def test_a_run_on_real_photos_splits_each_half_into_the_two_groups(tmp_path: Path) -> None:
    renamed_copies(tmp_path, 12)
    halves = [photo_split(p.name) for p in tmp_path.glob("*/*.jpg")]
    assert halves.count("choice") >= 4 and halves.count("report") >= 4
    result = run(tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for half in ("choice", "report"):
        groups = report["halves"][half]
        assert groups["plain_and_framed"]["photos"] + groups["others"]["photos"] == halves.count(half)
        assert groups["busy"]["photos"] <= groups["others"]["photos"]
        by_class = groups["by_source_class"]
        assert set(by_class) == {"Trouser", "Dress"}
        assert sum(c["plain_and_framed"]["photos"] + c["others"]["photos"] for c in by_class.values()) == (
            halves.count(half)
        )
    choice_textures_busy = report["halves"]["choice"]["busy"]["photos"]
    assert choice_textures_busy <= halves.count("choice") // 3 + 1  # above two thirds of the choice half


def test_a_set_with_no_photo_in_the_choice_half_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "Trouser").mkdir()
    for photo in sorted((PHOTOS / "pants").glob("*.jpg"))[:3]:  # the regression set is all report half
        shutil.copyfile(photo, tmp_path / "Trouser" / photo.name)
    result = run(tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == f"{tmp_path}: no readable in-domain photo in the choice half, where 'busy' is set"
