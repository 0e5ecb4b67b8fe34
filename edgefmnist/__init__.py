"""edgefmnist: a Fashion-MNIST classifier from PyTorch training to a torch-free ONNX runtime.

This package stays light to import: the runtime (``edgefmnist.runtime``) must load on a
board that has no torch, so nothing here imports torch, onnx or matplotlib.
"""

import os

__version__ = "0.1.0"

# onnxruntime 1.29 and later, on Linux and macOS, send usage events to Microsoft and keep a device
# identifier under ~/.cache/Microsoft unless this is set before it first loads (onnxruntime PR
# #27379, "Add POSIX telemetry"). A classifier on a board sends nothing: the default is off, and
# ORT_DISABLE_TELEMETRY=0 in the environment leaves onnxruntime's own default. Empty counts as unset
# (`docker run -e VAR=`), which onnxruntime would read as telemetry on.
if not os.environ.get("ORT_DISABLE_TELEMETRY"):
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
