"""edgefmnist.runtime: the torch-free predictor (numpy, onnxruntime and pillow only).

from edgefmnist.runtime import Predictor
predictor = Predictor("models/mlp.onnx")
probabilities = predictor.predict(images_uint8_n_28_28)
"""

from edgefmnist.runtime.metadata import ModelMetadata, read_metadata
from edgefmnist.runtime.predictor import Predictor

__all__ = ["ModelMetadata", "Predictor", "read_metadata"]
