"""The synthetic lighting suite: test images printed on white paper and photographed in bad light.

Each condition photographs the same test images, and the shipped default model, classifying
each photo as ``infer`` does (with its mirror image, :func:`picture_outputs`), is asked
for the label it gives the raw 28x28 array. The goal is 95 % under every condition; the
shipped model reaches 94.3-96.7 % (95.0 % or more everywhere but the colour cast, 94.3 %, and
the shadow band, 94.7 %), with no cliff between conditions, and this suite keeps it from
falling below 93 % anywhere.
"""

from __future__ import annotations

import numpy as np
import pytest
from edgefmnist.runtime.infer import picture_outputs
from edgefmnist.runtime.predictor import Predictor, default_model_path
from edgefmnist.runtime.preprocess import to_dataset_form
from helpers import PAPER, paper_photo

from edgefmnist.photo_render import Lighting

IMAGES = 300  # test images per condition
MIN_AGREEMENT = 0.93  # measured 0.943 (colour cast) to 0.967 with the shipped cnn.onnx; the goal is 0.95

CONDITIONS: dict[str, tuple[Lighting, float]] = {  # lighting, rotation in degrees
    "even light": (Lighting(), 0.0),
    "vignetting": (Lighting(vignetting=0.3), 0.0),
    "shadow band": (Lighting(shadow=0.45, shadow_angle=0.0, shadow_start=0.3), 0.0),
    "side light": (Lighting(gradient=0.25, gradient_angle=2.5), 0.0),
    "exposure 0.4": (Lighting(exposure=0.4), 0.0),
    "exposure 0.55": (Lighting(exposure=0.55), 0.0),
    "exposure 0.7": (Lighting(exposure=0.7), 0.0),
    "exposure 0.85": (Lighting(exposure=0.85), 0.0),
    "exposure 1.0": (Lighting(exposure=1.0), 0.0),
    "colour cast": (Lighting(cast=(1.1, 1.0, 0.75)), 0.0),
    "rotation 6°": (Lighting(), 6.0),
}


@pytest.fixture(scope="module")
def raw_labels(fashion) -> tuple[Predictor, np.ndarray, np.ndarray]:
    predictor = Predictor(default_model_path(), threads=1)
    images = fashion.test.images[:IMAGES]
    return predictor, images, predictor.predict(images).argmax(1)


@pytest.mark.slow
@pytest.mark.parametrize("condition", list(CONDITIONS))
def test_default_model_agrees_with_raw_images_under_bad_light(raw_labels, condition: str) -> None:
    predictor, images, expected = raw_labels
    lighting, angle = CONDITIONS[condition]
    seen = np.stack([to_dataset_form(paper_photo(image, lighting, angle)) for image in images])
    agreement = float((picture_outputs(predictor, seen, [True] * len(seen))[1].argmax(1) == expected).mean())
    assert agreement >= MIN_AGREEMENT, f"{condition}: {100 * agreement:.1f} % agreement"


def test_the_suite_is_really_dark_and_uneven() -> None:
    """The conditions are what they claim: an exposure darkens the paper, a shadow darkens one side."""
    blank = np.zeros((28, 28), np.uint8)
    dark = np.asarray(paper_photo(blank, Lighting(exposure=0.4), 0.0).convert("L"))
    assert abs(float(dark.mean()) - 0.4 * PAPER) < 3
    shadow = np.asarray(paper_photo(blank, *CONDITIONS["shadow band"]).convert("L"), np.float64)
    assert shadow[:, -20:].mean() < 0.7 * shadow[:, :20].mean()
