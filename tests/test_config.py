"""Closed sets of the export configuration are enums, checked when a preset is built."""

from __future__ import annotations

import pytest
from edgefmnist.export.quantize import PRESETS, QuantFormat, QuantMode, QuantPreset


def test_quantisation_presets_are_validated() -> None:
    for bad, message in [
        (dict(mode="float"), "unknown quantisation mode 'float'; expected one of dynamic, static"),
        (dict(mode="static", quant_format="QDQQ"), "unknown quantisation format 'QDQQ'"),
        (dict(mode="static", weight_type="int4"), "unknown weight_type 'int4'"),
        (dict(mode="static", calibration_method="Median"), "unknown calibration method 'Median'"),
        (dict(mode="static", input_dtype="int8"), "unknown input_dtype 'int8'; expected one of float32, uint8"),
        (dict(mode="static", calibration_images=0), "calibration_images must be at least 1, not 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            QuantPreset(**bad)  # type: ignore[arg-type]
    static = QuantPreset(mode="static")  # type: ignore[arg-type]  # strings, as a model's metadata stores them
    assert static.mode is QuantMode.static and static.quant_format is QuantFormat.QDQ
    assert PRESETS[QuantMode.static].to_dict()["quant_format"] == "QDQ"  # plain strings for the metadata
    assert set(PRESETS[QuantMode.dynamic].to_dict()) == {"mode", "weight_type", "per_channel", "reduce_range"}
