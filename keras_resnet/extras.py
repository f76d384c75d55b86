"""Optional parts of the package and the install extra that brings each one.

Example:
    >>> require("numpy", "this example").__name__
    'numpy'
"""

import importlib

from keras_resnet.errors import UserError

# Importable module -> the extra of keras3-resnet that installs it.
EXTRAS = {
    "tensorflow": "tensorflow",
    "tensorflow_datasets": "tfds",
    "ai_edge_litert": "litert",
    "fastapi": "serve",
    "uvicorn": "serve",
    "keras_tuner": "tune",
    "jax": "jax",
    "torch": "torch",
    "onnxruntime": "onnx",
    "tf2onnx": "onnx",
    "onnx": "onnx",
    "openvino": "openvino",
    "nncf": "openvino",
}


class MissingExtra(UserError, ImportError):
    """A feature needs a package that is not installed; the message names the extra."""


def require(module, purpose):
    """Import ``module`` or raise :class:`MissingExtra` saying what to install for ``purpose``.

    Example:
        >>> require("ai_edge_litert", "running TFLite files")  # doctest: +SKIP
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        if error.name is not None and error.name.split(".")[0] != module.split(".")[0]:
            raise  # the package is there but broken: show the real error
        extra = EXTRAS.get(module.split(".")[0])
        install = f"pip install 'keras3-resnet[{extra}]'" if extra else f"pip install {module}"
        raise MissingExtra(
            f"{purpose} needs the {module.split('.')[0]!r} package, which is not installed: "
            f"{install}."
        ) from None
