"""edgefmnist.export: PyTorch checkpoint -> ONNX (fp32, int8), validated against PyTorch.

    edgefmnist export runs/mlp-best.pt --quantize static
    edgefmnist verify runs/mlp-best.int8.onnx --checkpoint runs/mlp-best.pt

torch and onnx are imported by the modules that need them; :mod:`edgefmnist.export.parity`
needs only numpy. The names, opsets and thresholds come from :mod:`edgefmnist.contract` and
the metadata schema from :mod:`edgefmnist.model_metadata`: export imports the runtime only to
run a model (``verify --checkpoint``). ``verify`` without a checkpoint, which runs on a board,
is :mod:`edgefmnist.runtime.verify`.
"""
