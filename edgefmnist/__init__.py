"""edgefmnist: a Fashion-MNIST classifier from PyTorch training to a torch-free ONNX runtime.

This package stays light to import: the runtime (``edgefmnist.runtime``) must load on a
board that has no torch, so nothing here imports torch, onnx or matplotlib.
"""

__version__ = "0.1.0"
