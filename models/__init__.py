"""edgefmnist.pretrained: the shipped models (found with ``importlib.resources``)."""
