"""edgefmnist.export: PyTorch checkpoint -> ONNX (fp32, int8), validated against PyTorch.

    edgefmnist export runs/mlp-best.pt --quantize static
    edgefmnist verify runs/mlp-best.int8.onnx --checkpoint runs/mlp-best.pt

torch and onnx are imported by the modules that need them; :mod:`edgefmnist.export.parity`
needs only numpy and the runtime, so that ``verify`` also runs on a board.
"""
