"""The torch-free predictor: one onnxruntime session per model, safe to share between threads.

    edgefmnist infer --image shirt.jpg        # the CLI front end
    Predictor("models/mlp.onnx").predict(images)   # images: uint8 [N, 28, 28], dark background

The model carries its own normalisation, so the predictor feeds raw 0-255 pixels, in the dtype
the model's input asks for: float32, or uint8 for the static int8 models (the metadata's
``input.dtype`` says which). The session turns off the onnxruntime graph optimisers the
metadata names (``onnxruntime_session``; the int8 CNN names one that would slow it down).
Float images given to a uint8 model are rounded to the nearest pixel value and clipped to 0-255.

A single image takes the hot path: input and output buffers allocated and bound to the
session once per thread (onnxruntime's IOBinding), so a call is one copy in, one run, one
copy out; no feed dict, no new arrays inside onnxruntime. Batches go through ``run``.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime
from edgefmnist.runtime.metadata import ModelMetadata, read_metadata

from edgefmnist import spec
from edgefmnist.contract import (
    DEFAULT_MODEL_NAME,
    INPUT_DTYPES,
    INPUT_NAME,
    MAX_DEFAULT_THREADS,
    OUTPUT_NAMES,
    PRETRAINED_PACKAGE,
    to_model_input,
)
from edgefmnist.cores import available_cores
from edgefmnist.errors import ModelError, first_line, is_utf8

IMAGE_SIZE = spec.IMAGE_SIZE


def session_input_dtype(session: onnxruntime.InferenceSession) -> np.dtype:
    """The numpy dtype of the session's input (float32 or uint8); :class:`ModelError` for any other."""
    kind = session.get_inputs()[0].type
    if kind not in INPUT_DTYPES:
        raise ModelError(f"input must be float or uint8 [N, 1, 28, 28], found {kind}")
    return INPUT_DTYPES[kind]


def batched_outputs(
    session: onnxruntime.InferenceSession,
    inputs: np.ndarray,
    names: Sequence[str] = OUTPUT_NAMES,
    batch_size: int = 1000,
) -> list[np.ndarray]:
    """The outputs ``names`` (float32 ``[N, 10]`` each) of NCHW ``inputs`` (the session's input dtype),
    run ``batch_size`` images at a time and joined."""
    runs = [
        session.run(list(names), {INPUT_NAME: inputs[i : i + batch_size]}) for i in range(0, len(inputs), batch_size)
    ]
    return [np.concatenate([run[k] for run in runs]) for k in range(len(names))]


def batched_logits(session: onnxruntime.InferenceSession, inputs: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Logits float32 ``[N, 10]`` of NCHW ``inputs`` (:func:`batched_outputs`)."""
    return batched_outputs(session, inputs, [OUTPUT_NAMES[0]], batch_size)[0]


def default_threads() -> int:
    """Intra-op threads: the cores available, at most ``contract.MAX_DEFAULT_THREADS``."""
    return max(1, min(MAX_DEFAULT_THREADS, available_cores()))


def model_source(path: Path) -> str | bytes:
    """What ``onnxruntime.InferenceSession`` is given for the model at ``path``: the path as text,
    or the file's bytes when the name holds a byte that is not UTF-8 (onnxruntime takes only text
    paths). Raises ``OSError`` when such a file cannot be read."""
    return str(path) if is_utf8(str(path)) else path.read_bytes()


def open_session(
    path: Path, metadata: ModelMetadata, threads: int, *, arena: bool = True
) -> onnxruntime.InferenceSession:
    """A CPU session on the model at ``path``: ``threads`` intra-op threads, one inter-op, sequential; every
    graph optimisation but the ``metadata``'s :attr:`ModelMetadata.disabled_optimizers`; the CPU memory arena
    on unless ``arena`` is False. Raises :class:`ModelError` naming ``path`` when onnxruntime cannot load it.
    """
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = arena
    options.log_severity_level = 4  # fatal only: errors reach the user as one ModelError line
    try:  # onnxruntime prints an "EP Error" banner to stdout before it re-raises: keep stdout clean
        with contextlib.redirect_stdout(io.StringIO()):
            return onnxruntime.InferenceSession(
                model_source(path),
                options,
                providers=["CPUExecutionProvider"],
                disabled_optimizers=metadata.disabled_optimizers,
            )
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"{path}: onnxruntime cannot load it ({first_line(exc)})") from None


SINGLE_IMAGE_SHAPES = {(IMAGE_SIZE, IMAGE_SIZE), (1, IMAGE_SIZE, IMAGE_SIZE), (1, 1, IMAGE_SIZE, IMAGE_SIZE)}


class SingleImageBinding:
    """One thread's pre-allocated input and outputs for a single image, bound to the session once.

    ``run_options`` are passed to every run (:func:`bound_run`: build them once)."""

    def __init__(
        self,
        session: onnxruntime.InferenceSession,
        classes: int,
        dtype: np.dtype,
        run_options: onnxruntime.RunOptions | None,
    ) -> None:
        self.image = np.zeros((1, 1, IMAGE_SIZE, IMAGE_SIZE), dtype)
        self.outputs = np.zeros((len(OUTPUT_NAMES), 1, classes), np.float32)  # logits, probabilities
        self.binding = session.io_binding()
        self.binding.bind_cpu_input(INPUT_NAME, self.image)
        for name, buffer in zip(OUTPUT_NAMES, self.outputs, strict=False):
            self.binding.bind_output(name, "cpu", 0, np.float32, list(buffer.shape), buffer.ctypes.data)
        self.run_bound = bound_run(session, self.binding, run_options)  # the bare call on the bound buffers

    def run(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits and probabilities, float32 ``[1, 10]`` each, of one image (views of one copy of the
        reused output buffers).

        ``image`` is an unsigned, signed or float array of one of :data:`SINGLE_IMAGE_SHAPES`
        (:meth:`Predictor.run` checks both); float pixels for a uint8 model are rounded and clipped.
        """
        # The model's own dtype (identical object; an equal one takes the branches below): a plain copy
        if image.dtype is self.image.dtype:
            self.image[...] = image
        elif self.image.dtype == np.uint8:  # other pixels for a uint8 model: rounded and clipped
            np.copyto(self.image, np.clip(np.rint(image), 0, 255).reshape(self.image.shape), casting="unsafe")
        else:
            np.copyto(self.image, image.reshape(self.image.shape), casting="same_kind")
        self.run_bound()
        outputs = self.outputs.copy()  # one copy; unpacking the array itself costs more than indexing it
        return outputs[0], outputs[1]


def bound_run(
    session: onnxruntime.InferenceSession, binding: onnxruntime.IOBinding, run_options: onnxruntime.RunOptions | None
) -> Callable[[], None]:
    """A no-argument call that runs ``session`` on ``binding`` with ``run_options``.

    Calls the compiled session directly when this onnxruntime exposes it (it skips the Python
    wrapper's per-call checks); else the public ``run_with_iobinding``. Pass run options built
    once: given None, onnxruntime's Python binding builds default ones on every call, and options
    built once took the MLP int8's single-image run to 0.86x of that time (docs/experiments.md, "Speed":
    session and run options).
    """
    compiled, compiled_binding = getattr(session, "_sess", None), getattr(binding, "_iobinding", None)
    if compiled is not None and hasattr(compiled, "run_with_iobinding") and compiled_binding is not None:
        return lambda: compiled.run_with_iobinding(compiled_binding, run_options)
    return lambda: session.run_with_iobinding(binding, run_options)


class Predictor:
    """Classify 28x28 images with an exported edgefmnist ONNX model."""

    def __init__(self, model_path: Path | str, threads: int | None = None) -> None:
        """Load the model at ``model_path`` into one onnxruntime session (:func:`open_session`) with
        ``threads`` intra-op threads (default :func:`default_threads`).

        Reads and checks the metadata first (:func:`edgefmnist.runtime.metadata.read_metadata`),
        then the graph's signature: one float32 or uint8 input ``[N, 1, 28, 28]`` and the contract's two
        outputs of one score per class, and that a black and a white image give finite outputs. Raises
        :class:`ModelError` for a missing, corrupt or foreign model, one that needs a newer
        onnxruntime, one onnxruntime cannot load or run, or one whose outputs for a black or a
        white image are NaN or infinite.
        """
        self.path = Path(model_path)
        self.metadata: ModelMetadata = read_metadata(self.path)
        self.metadata.check_runtime(self.path)
        self.class_names = self.metadata.class_names
        self.threads = threads or default_threads()
        self.session = open_session(self.path, self.metadata, self.threads)
        self._check_signature()
        self._per_thread = threading.local()
        self._check_outputs_are_finite()

    def _check_signature(self) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if [i.name for i in inputs] != [INPUT_NAME]:
            raise ModelError(f"{self.path}: expected one input named {INPUT_NAME!r}, found {[i.name for i in inputs]}")
        if inputs[0].type not in INPUT_DTYPES or list(inputs[0].shape[1:]) != [1, IMAGE_SIZE, IMAGE_SIZE]:
            raise ModelError(
                f"{self.path}: input must be float or uint8 [N, 1, 28, 28], found {inputs[0].type} {inputs[0].shape}"
            )
        self.input_dtype = INPUT_DTYPES[inputs[0].type]
        declared = self.metadata.input.get("dtype", "float32")  # models made before uint8 inputs say float32
        if declared != self.input_dtype.name:
            raise ModelError(f"{self.path}: the metadata says a {declared} input, the graph takes {self.input_dtype}")
        if tuple(o.name for o in outputs) != OUTPUT_NAMES:
            raise ModelError(f"{self.path}: expected outputs {list(OUTPUT_NAMES)}, found {[o.name for o in outputs]}")
        classes = outputs[0].shape[-1]
        if classes != len(self.class_names) or len(self.class_names) != spec.NUM_CLASSES:
            raise ModelError(
                f"{self.path}: the model has {classes} outputs for {len(self.class_names)} class names; "
                f"expected {spec.NUM_CLASSES}"
            )
        tables = self.metadata.class_max_logit_quantiles
        if tables is not None and len(tables) != classes:
            raise ModelError(
                f"{self.path}: metadata calibration.class_max_logit_quantiles has {len(tables)} tables "
                f"for {classes} classes"
            )

    def _check_outputs_are_finite(self) -> None:
        """A black and a white image through the graph (well under a millisecond): weights that are
        NaN or infinite give NaN or infinity for most pictures, which no answer, accuracy or JSON can
        carry. Both, as a normalised black image is negative, and an infinite weight times it can
        be cut to 0 by a ReLU."""
        black_and_white = np.zeros((2, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        black_and_white[1] = 255
        probes = self.as_input(black_and_white)
        try:  # the session's own run: this thread's single-image binding is made on first use, not here
            outputs = self.session.run(OUTPUT_NAMES, {INPUT_NAME: probes})
        except Exception as exc:  # a graph that loads but cannot run
            raise self._run_failed(exc) from None
        self.refuse_non_finite(*outputs, what="a black or a white image")

    def refuse_non_finite(self, *outputs: np.ndarray, what: str = "these images") -> None:
        """Raise :class:`ModelError` if any of ``outputs`` (this model's logits or probabilities for
        ``what``) holds NaN or infinity. :meth:`run` does not check its own (a few µs of a
        single-image call); :meth:`logits` and ``infer``'s pictures do."""
        if not all(np.isfinite(output).all() for output in outputs):
            raise ModelError(f"{self.path}: gives NaN or infinite outputs for {what} (broken weights?)")

    def as_input(self, images: np.ndarray) -> np.ndarray:
        """uint8 or float images ``[N, 28, 28]``, ``[N, 1, 28, 28]`` or one ``[28, 28]`` -> the model's NCHW input.

        float32 for a float model; uint8 for a uint8 model (float pixels rounded, clipped to 0-255).
        """
        return to_model_input(images, self.input_dtype)

    def _single_image_binding(self) -> SingleImageBinding:
        binding = getattr(self._per_thread, "binding", None)
        if binding is None:
            binding = self._per_thread.binding = SingleImageBinding(
                self.session, len(self.class_names), self.input_dtype, onnxruntime.RunOptions()
            )
        return binding

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits and calibrated probabilities, float32 ``[N, 10]`` each, in one call.

        ``images``: raw 0-255 pixels, uint8 or float, ``[N, 28, 28]``, ``[N, 1, 28, 28]`` or one
        ``[28, 28]`` (:meth:`as_input`). The hot path: outputs are not checked for NaN or
        infinities (the model was probed at load; :meth:`logits` checks). Raises ``ValueError``
        for another shape and :class:`ModelError` when onnxruntime fails to run the graph.
        """
        images = np.asarray(images)
        single = images.shape in SINGLE_IMAGE_SHAPES and images.dtype.kind in "uif"
        inputs = images if single else self.as_input(images)
        try:
            if single:
                return self._single_image_binding().run(inputs)
            logits, probabilities = self.session.run(OUTPUT_NAMES, {INPUT_NAME: inputs})
        except Exception as exc:  # a graph that loads but cannot run (onnxruntime's untyped errors)
            raise self._run_failed(exc) from None
        return logits, probabilities

    def _run_failed(self, exc: Exception) -> ModelError:
        return ModelError(f"{self.path}: onnxruntime failed to run it ({first_line(exc)})")

    def logits(self, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Logits, float32 ``[N, 10]``, of ``images`` as :meth:`run` takes them, ``batch_size`` at a time.

        Raises as :meth:`run` does, and :class:`ModelError` for a NaN or infinite logit.
        """
        inputs = self.as_input(images)
        try:
            logits = batched_logits(self.session, inputs, batch_size)
        except Exception as exc:
            raise self._run_failed(exc) from None
        self.refuse_non_finite(logits, what=f"{len(inputs):,} images")
        return logits

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities, float32 ``[N, 10]`` (rows sum to 1); raises as :meth:`run` does."""
        return self.run(images)[1]


def default_model_path() -> Path:
    """The shipped default model inside the installed package (``edgefmnist.pretrained``); raises
    :class:`ModelError` when the package has none (an install without the models)."""
    from importlib.resources import files

    candidate = Path(str(files(PRETRAINED_PACKAGE) / DEFAULT_MODEL_NAME))
    if not candidate.is_file():
        raise ModelError(f"no shipped model {DEFAULT_MODEL_NAME} in edgefmnist.pretrained; pass --model PATH.onnx")
    return candidate
