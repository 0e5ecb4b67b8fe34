"""The shipped models' card, ``models/README.md``, written from measurements (``make models``).

    python -m edgefmnist.model_card models/ --bench models/bench.json

Every figure is measured here on the real test set (accuracy through the runtime, as
``edgefmnist evaluate`` does; through PyTorch for a checkpoint) or taken from the model's
own metadata (parity, the fitted temperature and its validation ECE) and the
``edgefmnist bench --json`` report (latency). Test ECE before and after temperature scaling
is measured through the runtime: ``softmax(logits)`` against the ``probabilities`` output.
The shipped-model test reads the card back with :func:`read_card_accuracies` and re-measures
every claim.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgefmnist import spec
from edgefmnist.calibration import expected_calibration_error, reference_typicality, softmax
from edgefmnist.contract import (
    DEFAULT_MODEL_NAME,
    SHIPPED_ARCHES,
    Dtype,
    is_checkpoint_name,
    is_onnx_name,
    shipped_names,
)
from edgefmnist.data import Split, load_test_split
from edgefmnist.metrics import accuracy
from edgefmnist.runtime.metadata import read_metadata
from edgefmnist.runtime.predictor import Predictor

ARCHES = {
    "mlp": "MLP 784-300-100-10 (the tutorial's network)",
    "cnn": "CNN 3x(conv3x3+BN+ReLU+pool) 16-32-64, head 576-64-10",
}
assert set(ARCHES) == set(SHIPPED_ARCHES), "a description for each shipped architecture"
CARD_ROW = re.compile(r"^\| `(?P<file>[^`]+)` \|.*?\| (?P<accuracy>\d+\.\d+) % \|")


def measured_accuracy(path: Path, test: Split) -> float:
    """Test accuracy through the runtime (ONNX) or PyTorch (``.pt``)."""
    if is_checkpoint_name(path):
        from edgefmnist.train import predict_logits

        return accuracy(predict_logits(load_trained(path).net, test.images), test.labels)
    return accuracy(Predictor(path).logits(test.images), test.labels)


@functools.lru_cache
def load_trained(checkpoint: Path):
    """A checkpoint (network, recipe, ...), loaded once however many card rows need it."""
    from edgefmnist.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint)


def agreement_text(path: Path) -> str:
    """Parity as recorded at export: fp32 against PyTorch, int8 against its fp32 parent."""
    parity = read_metadata(path).extra["parity"]
    text = f"{100 * parity['top1_agreement']:.2f} % vs {parity['reference']}"
    dtype = parity.get("dtype", parity.get("precision"))  # "precision" in models exported before the rename
    return text + (f", max \\|Δlogit\\| {parity['max_abs_logit_diff']:.1e}" if dtype == "fp32" else "")


def bench_p50(bench: dict, name: str) -> str:
    engine = "pytorch" if is_checkpoint_name(Path(name)) else "edgefmnist"
    row = next((r for r in bench["rows"] if r["model"] == name and r["engine"] == engine), None)
    return f"{row['latency_us']['p50']:,.1f}" if row else "—"


def network_figures(checkpoint: Path) -> tuple[str, str]:
    """Parameters and multiply-adds per image of the network in ``checkpoint``."""
    from edgefmnist.nets import count_multiply_adds, count_parameters

    net = load_trained(checkpoint).net
    return f"{count_parameters(net):,}", f"{count_multiply_adds(net):,}"


def describe_weights(quantization: dict) -> str:
    """``per-channel``, ``per-tensor``, or e.g. ``per-channel Gemm, per-tensor others``, from ``quantization``,
    with ``MSE ranges`` after it when the weight scales were fitted (:mod:`edgefmnist.export.weight_ranges`)
    and ``AdaRound`` when the weights were rounded by it (:mod:`edgefmnist.export.adaround`)."""
    ops = quantization.get("per_channel_ops") or []
    if quantization.get("per_channel"):
        text = "per-channel"
    else:
        text = f"per-channel {'/'.join(ops)}, per-tensor others" if ops else "per-tensor"
    text += ", MSE ranges" if quantization.get("mse_weight_ranges") else ""
    return text + (", AdaRound" if quantization.get("adaptive_rounding") else "")


def card_row(path: Path, test: Split, bench: dict) -> str:
    """The card's table row for the shipped file ``path``: what it is, its size, its test accuracy
    measured on ``test``, its agreement with its parent and its batch-1 p50 from ``bench`` (bench --json)."""
    arch = path.name.split(".")[0]
    params, macs = network_figures(path.with_name(f"{arch}.pt"))
    if is_checkpoint_name(path):
        recipe = load_trained(path).recipe.name
        what, agreement = f"PyTorch checkpoint: {ARCHES[arch]}, `{recipe}` recipe", "—"
    else:
        metadata = read_metadata(path)
        quantization = metadata.extra.get("quantization") or {}
        what = (
            f"fp32 ONNX, opset {metadata.extra['opset']}"
            if metadata.dtype is Dtype.fp32
            else f"int8 ONNX ({quantization.get('mode')}, {quantization.get('quant_format', 'QOperator')}, "
            f"{describe_weights(quantization)}, {metadata.input.get('dtype', 'float32')} input"
            f"{', bias-corrected' if quantization.get('bias_correction') else ''}"
            f"{', first block in float' if quantization.get('float_first_block') else ''})"
        )
        if path.name == DEFAULT_MODEL_NAME:
            what += "; **the default of `infer` and `evaluate`**"
        agreement = agreement_text(path)
    return (
        f"| `{path.name}` | {what} | {params} | {macs} | {path.stat().st_size / 1024:,.0f} KiB | "
        f"{100 * measured_accuracy(path, test):.2f} % | {agreement} | {bench_p50(bench, path.name)} |"
    )


def runtime_outputs(path: Path, images: np.ndarray, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Logits and the ``probabilities`` output, float32 ``[N, 10]``, through the runtime."""
    predictor = Predictor(path)
    runs = [predictor.run(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    return np.concatenate([r[0] for r in runs]), np.concatenate([r[1] for r in runs])


def calibration_row(path: Path, test: Split) -> str:
    """``| file | T | validation ECE (%) | test ECE (%) | logit at min-typicality | test images below (%) |``;
    ECE cells read ``before → after``.

    Percentages carry no ``%`` sign, so :data:`CARD_ROW` never mistakes them for accuracies.
    """
    logits, probabilities = runtime_outputs(path, test.images)
    test_before = 100 * expected_calibration_error(softmax(logits), test.labels)
    test_after = 100 * expected_calibration_error(probabilities, test.labels)
    metadata = read_metadata(path)
    calibration, quantiles = metadata.calibration, metadata.max_logit_quantiles
    tables = metadata.class_max_logit_quantiles or ([quantiles] if quantiles is not None else [])
    typical = "— | —"
    scores = reference_typicality(logits, metadata.class_max_logit_quantiles, quantiles)
    if scores is not None:  # then there is at least one table
        floors = [float(np.interp(spec.DEFAULT_MIN_TYPICALITY, t["levels"], t["values"])) for t in tables]
        below = 100 * float(np.mean(scores < spec.DEFAULT_MIN_TYPICALITY))
        span = f"{min(floors):.3f}" if len(floors) == 1 else f"{min(floors):.2f} to {max(floors):.2f}"
        typical = f"{span} | {below:.2f}"
    if calibration is None:
        return f"| `{path.name}` | — (not calibrated) | — | {test_before:.2f} | {typical} |"
    return (
        f"| `{path.name}` | {calibration['temperature']:.4f} | {100 * calibration['ece_before']:.2f} → "
        f"{100 * calibration['ece_after']:.2f} | {test_before:.2f} → {test_after:.2f} | {typical} |"
    )


def calibration_section(folder: Path, names: Sequence[str], test: Split) -> list[str]:
    """The card's lines on temperature scaling: one :func:`calibration_row` per ONNX model of ``names``."""
    rows = [
        calibration_row(folder / name, test) for name in names if is_onnx_name(Path(name)) and (folder / name).is_file()
    ]
    return [
        "## Calibrated probabilities",
        "",
        "Each model's `probabilities` output is `softmax(logits / T)` (temperature scaling, Guo et al. 2017);",
        "`logits` stays raw. `T` is fitted at export on that model's own logits for the 5,000 validation images",
        "(never the test set); the int8 model gets its own `T`. ECE: expected calibration error, 15 equal-width",
        "confidence bins, in percent, before (`T = 1`) → after. Test ECE is measured through the runtime.",
        "The same validation logits give each model its typicality references, one per class",
        "(`class_max_logit_quantiles`, of the validation images the model gives that class): a picture whose",
        "largest logit is below its class's value at the default min-typicality "
        f"({spec.DEFAULT_MIN_TYPICALITY:.3f}) is called unsure; the last column is the share of test images that are.",
        "",
        "| file | T | validation ECE (%) | test ECE (%) | largest logit at min-typicality, per class "
        "| test images below (%) |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ]


def int8_speed_text(bench: dict) -> str:
    """``mlp.int8.onnx took 0.62x the batch-1 p50 of mlp.onnx, cnn.int8.onnx 0.97x that of cnn.onnx
    (timed in the same blocks)``, from the bench rows' ``vs_fp32`` and ``fp32``."""
    pairs = [
        (row["model"], row["vs_fp32"]["p50"], Path(row["fp32"]).name)
        for row in bench["rows"]
        if row["engine"] == "edgefmnist" and row.get("vs_fp32")
    ]
    if not pairs:
        return "the bench timed no int8 model beside its fp32 model"
    (model, ratio, fp32), *others = pairs
    text = f"{model} took {ratio:.2f}x the batch-1 p50 of {fp32}"
    text += "".join(f", {model} {ratio:.2f}x that of {fp32}" for model, ratio, fp32 in others)
    return text + " (timed in the same blocks)"


def session_setting_text(folder: Path, names: Sequence[str]) -> list[str]:
    """A sentence per shipped ONNX model whose metadata names onnxruntime optimisers to turn off."""
    lines = []
    for name in names:
        path = folder / name
        if is_onnx_name(path) and path.is_file() and (disabled := read_metadata(path).disabled_optimizers):
            lines.append(
                f"`{name}` runs at the speed above without onnxruntime's {', '.join(f'`{o}`' for o in disabled)} "
                "(its metadata's `onnxruntime_session`, which the predictor follows); plain onnxruntime with it on "
                "gives the same outputs, slower."
            )
    return lines


def render_card(folder: Path, test: Split, bench: dict) -> str:
    """The model card (``models/README.md``) of the shipped files in ``folder``, measured on ``test``."""
    names = shipped_names()
    rows = [card_row(folder / name, test, bench) for name in names if (folder / name).is_file()]
    machine, settings = bench["machine"], bench["settings"]
    pick = bench.get("recommendation") or {}
    return "\n".join(
        [
            "# Shipped models",
            "",
            "Trained, exported, quantised and validated by the project's own commands on the real",
            "Fashion-MNIST, seed 0. `make models` regenerates every file here, this card included (on another",
            "CPU the trained weights differ a little, and with them the accuracies, AdaRound's rounding and",
            "the latencies; see the README's Training section).",
            "",
            "| file | what | parameters | multiply-adds | size | test accuracy | agreement | batch-1 p50 µs |",
            "|---|---|---:|---:|---:|---:|---|---:|",
            *rows,
            "",
            "Test accuracy: all 10,000 test images, measured through the runtime (`edgefmnist evaluate`) or PyTorch.",
            "Agreement: top-1 agreement recorded at export. "
            f"Latency: `edgefmnist bench`, {settings['threads']} thread, "
            f"on {machine['cpu']} ({machine['arch']}), onnxruntime {machine['onnxruntime']}; "
            "`bench.json` has the full report.",
            "",
            "## The default model",
            "",
            f"`infer` and `evaluate` use `{DEFAULT_MODEL_NAME}` unless given `--model`. It is the most accurate",
            "fp32 model (an int8 file may score a few images above or below its fp32 parent: the rounding of",
            "its weights), it matches PyTorch exactly on any CPU, and one picture costs tens of microseconds, far",
            "less than decoding the picture. On the machine above the bench recommended "
            f"`{pick.get('model', '?')}` ({pick.get('rule', 'no recommendation')}).",
            "Whether int8 pays off depends on the CPU: on the machine above, "
            f"{'with' if machine['int8_dot_product'] else 'without'} int8 dot-product instructions "
            f"(a Pi 4 has none, a Pi 5 has them), {int8_speed_text(bench)}; run `edgefmnist bench` on your "
            "board and pass `--model` accordingly.",
            *session_setting_text(folder, names),
            "",
            "Every model's claims are in its own metadata; `edgefmnist verify MODEL.onnx` re-measures them.",
            "",
            *calibration_section(folder, names, test),
        ]
    )


def read_card_accuracies(text: str) -> dict[str, float]:
    """``{file name: test accuracy (0-1)}`` from a card written by :func:`render_card`."""
    return {m["file"]: float(m["accuracy"]) / 100 for m in map(CARD_ROW.match, text.splitlines()) if m}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write models/README.md from measurements.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--bench", type=Path, required=True, help="an `edgefmnist bench --json` report")
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args(argv)
    from edgefmnist.atomic import write_text_atomic

    card = render_card(args.folder, load_test_split(args.data_dir), json.loads(args.bench.read_text()))
    write_text_atomic(args.folder / "README.md", card)
    print(f"wrote {args.folder / 'README.md'}")


if __name__ == "__main__":
    main()
