"""``edgefmnist export`` and ``edgefmnist verify``: export, quantise, and prove parity.

    edgefmnist export runs/mlp-best.pt --quantize static --json
    edgefmnist verify runs/mlp-best.onnx --checkpoint runs/mlp-best.pt

Every model is validated on the full 10,000-image test set *before* it is moved into place;
a model that fails leaves the file previously at that path untouched.

Each model's ``probabilities`` output is calibrated by temperature scaling
(:mod:`edgefmnist.calibration`): ``T`` is fitted on that model's *own* validation logits
(the first 5,000 training images), so the int8 model gets its own ``T``, and written into the
graph's softmax; the metadata's ``calibration`` entry records ``T`` with validation and test
ECE/NLL before and after. The ``logits`` output stays raw.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from edgefmnist.export.onnx_export import export_onnx, finalize_model, opset_of
from edgefmnist.export.parity import ParityReport, compare_logits
from edgefmnist.export.quantize import PRESETS, QuantMode, QuantPreset, quantize_model
from edgefmnist.export.temperature import set_temperature
from edgefmnist.runtime.predictor import batched_outputs, session_input_dtype

import edgefmnist
from edgefmnist import spec
from edgefmnist.atomic import (
    check_writable,
    refuse_overwriting,
    refuse_standard_stream,
    write_bytes_atomic,
    write_target,
    write_together,
)
from edgefmnist.calibration import TemperatureCalibration, calibrate
from edgefmnist.checkpoint import Checkpoint, check_checkpoint_file, load_checkpoint
from edgefmnist.contract import (
    DEFAULT_OPSET,
    FP32_ATOL,
    FP32_SUFFIX,
    INPUT_LAYOUT,
    INPUT_NAME,
    INT8_SUFFIX,
    Dtype,
    format_version,
    int8_name,
    is_onnx_name,
    oldest_onnxruntime,
    to_model_input,
)
from edgefmnist.data import FashionMNIST, Split, inputs_of_data, load_fashion_mnist, load_test_split
from edgefmnist.digest import file_sha256
from edgefmnist.errors import CheckpointError, EdgeFmnistError, ModelError, UsageError, first_line, is_utf8
from edgefmnist.model_metadata import (
    CALIBRATION_KEY,
    FLOAT_BLOCK_DISABLED_OPTIMIZERS,
    SCHEMA_VERSION,
    SESSION_KEY,
    ModelMetadata,
)
from edgefmnist.train import predict_logits


@dataclass(frozen=True)
class ExportedModel:
    """A model ``export`` wrote: its path, weight dtype, size in bytes, parity report and calibration."""

    path: Path
    dtype: Dtype  # of the weights
    size_bytes: int
    parity: ParityReport  # against PyTorch (fp32) or against the fp32 ONNX parent (int8)
    calibration: TemperatureCalibration  # T fitted on validation; validation and test figures

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "dtype": self.dtype.value,
            "written": True,
            "size_bytes": self.size_bytes,
            "parity": self.parity.to_dict(),
            CALIBRATION_KEY: self.calibration.to_metadata(),
        }


def int8_path_for(fp32_path: Path) -> Path:
    """``runs/mlp.onnx`` -> ``runs/mlp.int8.onnx``."""
    return fp32_path.with_name(int8_name(fp32_path.name))


def model_outputs(
    session: onnxruntime.InferenceSession, images: np.ndarray, batch_size: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and probabilities, both float32 ``[N, 10]``, of uint8 images ``[N, 28, 28]``, in batches.

    The images go in as the session's input dtype asks (float32, or the same uint8 pixels).
    """
    logits, probabilities = batched_outputs(
        session, to_model_input(images, session_input_dtype(session)), batch_size=batch_size
    )
    return logits, probabilities


def onnx_outputs(path: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`model_outputs` of a graph not yet finished, in a plain session (no metadata yet for ``open_session``).

    The one optimiser metadata turns off (QDQ propagation, int8 CNN) moves a quantisation across a max, which is
    exact: tests/test_uint8_input.py finds the predictor's logits equal to a plain session's.
    """
    return model_outputs(onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]), images)


def calibrate_graph(path: Path, validation: Split) -> TemperatureCalibration:
    """Fit ``T`` on the validation logits of the graph at ``path`` and write it into its softmax."""
    calibration = calibrate(onnx_outputs(path, validation.images)[0], validation.labels)
    set_temperature(path, calibration.temperature)
    return calibration


def calibrate_and_compare(
    path: Path,
    validation: Split,
    test: Split,
    reference_logits: np.ndarray,
    *,
    dtype: Dtype,
    reference_name: str,
    atol: float = FP32_ATOL,
) -> tuple[TemperatureCalibration, np.ndarray, ParityReport]:
    """:func:`calibrate_graph`, then the graph's test logits ``[N, 10]`` and their :func:`compare_logits` report.

    The graph (named by its file name) is compared with ``reference_logits`` ``[N, 10]``, its
    probabilities checked against its fitted temperature.
    """
    calibration = calibrate_graph(path, validation)
    logits, probabilities = onnx_outputs(path, test.images)
    report = compare_logits(
        reference_logits,
        logits,
        test.labels,
        dtype=dtype,
        atol=atol,
        reference_name=reference_name,
        candidate_name=path.name,
        candidate_probabilities=probabilities,
        temperature=calibration.temperature,
    )
    return calibration, logits, report


def input_dtype_name(model: onnx.ModelProto) -> str:
    """``"uint8"`` or ``"float32"``: what the graph's input takes (the predictor feeds that)."""
    return "uint8" if model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8 else "float32"


def build_metadata(
    checkpoint: Checkpoint, checkpoint_sha256: str, model: onnx.ModelProto, dtype: Dtype, extra: dict
) -> ModelMetadata:
    """The self-description written into every exported model (:mod:`edgefmnist.model_metadata`).

    Raises :class:`ModelError` when the graph's opset or IR version is newer than every
    onnxruntime release the contract knows.
    """
    config = checkpoint.net_config
    opset = opset_of(model)
    needed = oldest_onnxruntime(opset, model.ir_version)
    if needed is None:
        raise ModelError(f"opset {opset} / IR {model.ir_version} is newer than any onnxruntime this toolkit knows")
    return ModelMetadata(
        schema=SCHEMA_VERSION,
        class_names=checkpoint.class_names,
        input={
            "name": INPUT_NAME,
            "layout": INPUT_LAYOUT,
            "shape": ["batch", *spec.INPUT_SHAPE],
            "dtype": input_dtype_name(model),
            "pixels": "raw 0-255 grayscale",
            "background": "dark (Fashion-MNIST negatives)",
            "normalization": {
                "in_graph": True,
                "formula": "(x / 255 - mean) / std",
                "mean": config.mean,
                "std": config.std,
            },
        },
        dtype=dtype,
        arch=config.arch.value,
        min_onnxruntime=format_version(needed),
        extra={
            "net_config": config.to_dict(),
            "recipe": checkpoint.recipe.to_dict(),
            "seed": checkpoint.seed,
            "opset": opset,
            "ir_version": model.ir_version,
            "checkpoint_sha256": checkpoint_sha256,
            "data_sha256": checkpoint.data_sha256,
            "edgefmnist_version": edgefmnist.__version__,
            **extra,
        },
    )


@contextlib.contextmanager
def scratch_folder() -> Iterator[Path]:
    """A scratch folder outside the targets' folders, where the models are made and validated: a
    target folder sees only the final writes, so a failure, Ctrl-C or SIGKILL before them leaves
    the previous files there as they were."""
    with tempfile.TemporaryDirectory(prefix="edgefmnist-export-") as scratch:
        yield Path(scratch)


def _finish(
    tmp: Path,
    target: Path,
    checkpoint: Checkpoint,
    checkpoint_sha256: str,
    dtype: Dtype,
    report: ParityReport,
    extra: dict,
    checked: Sequence[dict] = (),
) -> None:
    """Refuse a model that failed validation, else write its metadata (still under the temp name);
    ``checked`` are the ``--json`` entries of the models validated before it, reported with it."""
    report.raise_if_failed(f"{target}: not written", [*checked, unwritten(target, dtype, report)])
    model = onnx.load(str(tmp))  # finalize_model runs the checker on the finished file
    extra = {"test_accuracy": report.candidate_accuracy, "parity": report.to_dict(), **extra}
    finalize_model(tmp, build_metadata(checkpoint, checkpoint_sha256, model, dtype, extra))


def unwritten(target: Path, dtype: Dtype, report: ParityReport) -> dict:
    """The ``--json`` entry of a model that was validated (passed or not) but not written."""
    return {"path": str(target), "dtype": dtype.value, "written": False, "parity": report.to_dict()}


def check_out_path(out: Path, checkpoint_path: Path, int8_path: Path | None) -> None:
    """Raise, before any work, :class:`UsageError` when the model's path ``out`` is not named
    ``NAME.onnx`` (a device or a FIFO passes), when it is a device with ``int8_path`` (the int8
    model is made from the fp32 file) or ``int8_path`` is no regular file; :class:`EdgeFmnistError`
    when it or ``int8_path`` is the checkpoint's file, or when its path holds a byte that is not
    UTF-8 (onnxruntime's quantiser opens files by text paths); :class:`WriteFailed` when either cannot be written
    (:func:`~edgefmnist.atomic.check_writable`), and :class:`UsageError` when either is standard
    output or error (:func:`~edgefmnist.atomic.refuse_standard_stream`) or when ``int8_path`` leads to
    ``out`` (a symlink from one name to the other)."""
    for path, what in ((out, "the model"), (int8_path, "the int8 model")):
        if path is not None:
            refuse_standard_stream("--out", path, what)
    device = write_target(out)[1]
    if not device and not is_onnx_name(out):  # ".onnx" alone has no suffix
        raise UsageError(f"--out {out}: the model is written as ONNX; name it NAME{FP32_SUFFIX}")
    if not device and out.name.lower().endswith(INT8_SUFFIX):
        raise UsageError(
            f"--out {out}: names an int8 model; give the fp32 model's name, NAME{FP32_SUFFIX} "
            f"(--quantize writes NAME{INT8_SUFFIX} beside it)"
        )
    if device and int8_path is not None:
        raise UsageError(f"--out {out}: not a file, and --quantize makes the int8 model from the fp32 file")
    if int8_path is not None:
        if os.path.realpath(int8_path) == os.path.realpath(out):  # a symlink from one name to the other
            raise UsageError(f"--out {out}: {int8_path} leads to it, so the int8 model would overwrite it")
    if not is_utf8(str(out)):
        raise EdgeFmnistError(
            f"{out}: the model's path holds a byte that is not UTF-8, which the ONNX tools cannot open"
        )
    outputs = [out] + ([int8_path] if int8_path is not None else [])
    refuse_overwriting("--out", outputs, [(checkpoint_path, f"the checkpoint {checkpoint_path}")])
    for path in outputs:
        check_writable(path, regular="--quantize's int8 model" if path == int8_path else None)


def quantize_or_refuse(
    fp32_path: Path, int8_path: Path, preset: QuantPreset, train_images: np.ndarray | None
) -> QuantPreset:
    """:func:`quantize_model`, any failure of it raised as :class:`ModelError` naming onnxruntime's
    version: the graph rewrites expect the node patterns of the onnxruntime releases they were
    written for and raise ``ValueError`` on others, and onnxruntime's quantiser raises what it will
    (``KeyError``, ``AssertionError``, the ONNX checker's errors) on a graph it does not expect."""
    try:
        return quantize_model(fp32_path, int8_path, preset, train_images)
    except (EdgeFmnistError, OSError, MemoryError):  # named by the CLI as what they are (a full disk, ...)
        raise
    except Exception as exc:  # a third-party library's failure on this graph: one line, not a traceback
        raise ModelError(
            f"{int8_path.name}: cannot quantise with onnxruntime {onnxruntime.__version__} "
            f"({type(exc).__name__}: {first_line(exc)})"
        ) from exc


def export_checkpoint(
    checkpoint_path: Path,
    out: Path | None = None,
    quantize: str = "none",
    opset: int = DEFAULT_OPSET,
    atol: float = FP32_ATOL,
    data_dir: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> list[ExportedModel]:
    """Export fp32 (always) and int8 (``quantize`` = dynamic/static), each calibrated and validated before it lands.

    ``out`` defaults to the checkpoint's name with ``.onnx``; the int8 model goes beside it as
    ``NAME.int8.onnx``. ``progress`` receives a short line at the start of each stage.

    Raises :class:`CheckpointError` for an unreadable checkpoint, :class:`DataError` when the
    data set cannot be found or verified, :class:`ModelError` for an opset outside
    ``contract.MIN_OPSET``..``MAX_OPSET`` or a graph the ONNX checker rejects, ``ValueError``
    for an unknown ``quantize``, :class:`UsageError` for an ``out`` not named ``.onnx`` and
    :class:`EdgeFmnistError` for one that is the checkpoint (:func:`check_out_path`) or, once the
    data is found, one of the data set's files,
    :class:`ValidationFailed` (exit code 3) when a model fails validation (the file at its path
    is then left as it was), :class:`ModelError` when the int8 graph cannot be made
    (:func:`quantize_or_refuse`), and :class:`WriteFailed` when the final write fails.
    """
    mode = None if quantize == "none" else QuantMode.parse(quantize, "quantisation mode")
    check_checkpoint_file(checkpoint_path)  # an ONNX model given here is named as one, before --out is judged
    out = out or checkpoint_path.with_suffix(".onnx")
    int8_path = int8_path_for(out)
    int8_target = int8_path if mode else None
    check_out_path(out, checkpoint_path, int8_target)
    checkpoint = load_checkpoint(checkpoint_path)
    checkpoint_sha256 = file_sha256(checkpoint_path)
    dataset = load_fashion_mnist(data_dir)  # the validation split fits T; static int8 calibrates on train
    written = [path for path in (out, int8_target) if path is not None]
    refuse_overwriting("--out", written, inputs_of_data(data_dir))  # a name that leads to an IDX file
    test = dataset.test
    progress(f"running PyTorch {checkpoint_path.name} on {len(test):,} test images")
    torch_logits = predict_logits(checkpoint.net, test.images)
    with scratch_folder() as scratch:
        tmp, int8_tmp = scratch / out.name, scratch / int8_path.name
        progress(
            f"exporting {out.name} (opset {opset}), fitting its temperature on {len(dataset.validation):,} "
            "validation images, validating it on the test set"
        )
        export_onnx(checkpoint.net, tmp, opset)
        calibration, fp32_logits, report = calibrate_and_compare(
            tmp,
            dataset.validation,
            test,
            torch_logits,
            dtype=Dtype.fp32,
            atol=atol,
            reference_name=f"PyTorch {checkpoint_path.name}",
        )
        calibration = calibration.with_test(fp32_logits, test.labels)
        _finish(
            tmp, out, checkpoint, checkpoint_sha256, Dtype.fp32, report, {CALIBRATION_KEY: calibration.to_metadata()}
        )
        fp32 = (report, calibration)
        if mode is None:
            model_bytes = tmp.read_bytes()
            write_bytes_atomic(out, model_bytes)  # a device (/dev/null) has no size of its own to stat
            return [ExportedModel(out, Dtype.fp32, len(model_bytes), *fp32)]
        applied, calibration, int8_logits, report = quantised_and_compared(
            tmp,
            int8_tmp,
            mode,
            dataset,
            fp32_logits,
            reference_name=out.name,
            announce=lambda retry: progress(
                f"quantising to {int8_path.name} ({quantize}"
                + (", every weight per channel: the first try failed validation" if retry else "")
                + "), fitting its own temperature, validating it"
            ),
        )
        torch_report = compare_logits(
            torch_logits,
            int8_logits,
            test.labels,
            dtype=Dtype.int8,
            reference_name=f"PyTorch {checkpoint_path.name}",
            candidate_name=int8_path.name,
        )
        calibration = calibration.with_test(int8_logits, test.labels)
        _finish(
            int8_tmp,
            int8_path,
            checkpoint,
            checkpoint_sha256,
            Dtype.int8,
            report,
            int8_metadata(tmp, out.name, applied, torch_report, calibration),
            checked=[unwritten(out, Dtype.fp32, fp32[0])],  # it passed, but lands only beside its int8 model
        )
        write_together([(out, tmp.read_bytes()), (int8_path, int8_tmp.read_bytes())])  # both validated
    return [
        ExportedModel(out, Dtype.fp32, out.stat().st_size, *fp32),
        ExportedModel(int8_path, Dtype.int8, int8_path.stat().st_size, report, calibration),
    ]


def quantised_and_compared(
    fp32_path: Path,
    int8_path: Path,
    mode: QuantMode,
    dataset: FashionMNIST,
    fp32_logits: np.ndarray,
    reference_name: str,
    announce: Callable[[bool], None],
) -> tuple[QuantPreset, TemperatureCalibration, np.ndarray, ParityReport]:
    """Quantise ``fp32_path`` to ``int8_path`` by ``mode``'s preset, then fit its temperature and compare it.

    When the preset's int8 model fails the comparison, its fallback (:func:`preset_and_fallback`)
    replaces it; ``announce(retry)`` is called before each try, ``retry`` True for the fallback.
    Returns what was applied, the int8 model's calibration, its test logits float32 ``[N, 10]``
    and the comparison with ``fp32_logits``, passed or not (the last one tried). Raises
    :class:`ModelError` when the int8 graph cannot be made (:func:`quantize_or_refuse`).
    """
    for tries, preset in enumerate(preset_and_fallback(PRESETS[mode])):
        announce(tries > 0)
        applied = quantize_or_refuse(
            fp32_path, int8_path, preset, dataset.train.images if mode is QuantMode.static else None
        )
        calibration, int8_logits, report = calibrate_and_compare(
            int8_path, dataset.validation, dataset.test, fp32_logits, dtype=Dtype.int8, reference_name=reference_name
        )
        if report.passed:
            break
    return applied, calibration, int8_logits, report


def int8_metadata(
    parent: Path,
    parent_name: str,
    applied: QuantPreset,
    torch_report: ParityReport,
    calibration: TemperatureCalibration,
) -> dict:
    """The metadata an int8 model carries beyond its fp32 parent's: the parent's name and SHA-256, the
    quantisation applied, the session options it needs, its parity with PyTorch and its calibration."""
    return {
        "parent_sha256": file_sha256(parent),
        "parent": parent_name,
        "quantization": applied.to_dict(),
        **(
            {SESSION_KEY: {"disabled_optimizers": list(FLOAT_BLOCK_DISABLED_OPTIMIZERS)}}
            if applied.float_first_block
            else {}
        ),
        "parity_vs_pytorch": torch_report.to_dict(),
        CALIBRATION_KEY: calibration.to_metadata(),
    }


def preset_and_fallback(preset: QuantPreset) -> list[QuantPreset]:
    """``preset``, then, for static int8 with some per-tensor weights, the same with every weight per channel.

    Per-tensor weights keep the faster kernels and, with MSE ranges and AdaRound, pass the
    gate on the shipped CNN (99.62 % agreement on the test set), but a CNN trained for two epochs agreed on
    only 98.80 % with them and on 99.14 % per channel (both measured with min-max ranges and
    rounding to nearest): export tries the second when the first fails validation.
    """
    if preset.mode is not QuantMode.static or preset.per_channel:
        return [preset]
    return [preset, dataclasses.replace(preset, per_channel=True)]


def verify_against_checkpoint(
    model_path: Path,
    checkpoint_path: Path,
    atol: float = FP32_ATOL,
    data_dir: Path | None = None,
    test: Split | None = None,
) -> ParityReport:
    """Parity of an exported model (fp32 or int8) against the PyTorch checkpoint.

    Probabilities are checked against ``softmax(logits / T)`` with the model's recorded ``T``
    (1 for a model exported before temperature scaling). ``test`` (the test split) is loaded
    from ``data_dir`` when not given. A failed check is not raised but listed in the report's
    ``failures`` (:meth:`ParityReport.raise_if_failed` makes it exit code 3). Raises
    :class:`ModelError` for a model the runtime cannot load, :class:`CheckpointError` for an
    unreadable checkpoint or one whose SHA-256 is not the one the model records (before the
    test set is read), and :class:`DataError` when the test set cannot be found or verified.
    """
    from edgefmnist.runtime.predictor import Predictor  # the runtime runs the exported model

    predictor = Predictor(model_path)
    checkpoint = load_checkpoint(checkpoint_path)
    recorded, actual = predictor.metadata.extra.get("checkpoint_sha256"), file_sha256(checkpoint_path)
    if recorded and recorded != actual:  # before the test set: no parity to measure
        raise CheckpointError(
            f"{checkpoint_path}: not the checkpoint {model_path.name} was exported from "
            f"(SHA-256 {actual[:12]}..., where the model records {recorded[:12]}...)"
        )
    test = test or load_test_split(data_dir)
    logits, probabilities = model_outputs(predictor.session, test.images)
    report = compare_logits(
        predict_logits(checkpoint.net, test.images),
        logits,
        test.labels,
        dtype=predictor.metadata.dtype,
        atol=atol,
        reference_name=f"PyTorch {checkpoint_path.name}",
        candidate_name=model_path.name,
        candidate_probabilities=probabilities,
        temperature=predictor.metadata.temperature,
    )
    return report
