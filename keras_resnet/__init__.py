"""keras_resnet: the networks of He et al. 2015, "Deep Residual Learning for Image
Recognition", as registered Keras 3 layers and functional models.

Importing it needs Keras and NumPy only, on any Keras backend, and registers the layers, so
``keras.saving.load_model`` reads our ``.keras`` files afterwards. Every public module of the
package is an attribute (``keras_resnet.explain``), imported on first use; those that need
TensorFlow (``data``, ``distribute``, ``runs``, ``export``, ``serving``, ...) load only then.

Example:
    >>> import keras_resnet
    >>> keras_resnet.ResNet50().name
    'resnet50'
"""

import importlib
import os
import pkgutil
import sys

# The `keras-resnet` command's Ctrl-C and SIGTERM handlers go in first, so no moment of its
# start-up escapes them (keras_resnet.interrupts).
if os.path.basename(sys.argv[0] if sys.argv else "") == "keras-resnet":
    importlib.import_module("keras_resnet.interrupts").install("keras-resnet: interrupted.")

__version__ = "0.1.0"

# Public name -> the module that defines it.
_PUBLIC = {
    **{name: "blocks" for name in ("BottleneckBlock", "ResidualBlock")},
    **{
        name: "models"
        for name in (
            "CifarResNet", "ImageNetResNet", "ResNet18", "ResNet20", "ResNet32", "ResNet34",
            "ResNet44", "ResNet50", "ResNet56", "ResNet101", "ResNet110", "ResNet152",
            "ResNet1202", "build_resnet", "from_keras_applications", "get_model",
            "ResNeXt50_32x4d", "ResNeXt101_32x8d", "ResNeXt101_64x4d", "WideResNet50_2",
            "WideResNet101_2", "ResNet18D", "ResNet34D", "ResNet50D", "ResNet101D",
            "ResNet152D", "SEResNet50", "SEResNet101", "SEResNet152", "ResNet50V2",
            "ResNet101V2", "ResNet152V2", "PreActResNet110", "PreActResNet164",
            "PreActResNet1001",
        )
    },
    **{name: "heads" for name in ("FCN", "DeepLabV3", "DeepLabV3Plus", "RetinaNet")},
    "create_model": "features",
    "list_models": "models",
    "StageTap": "builder",
    "Task": "tasks",
    "TaskLayer": "tasks",
    "task_of": "tasks",
    "embedding_model": "features",
    "feature_extractor": "features",
    "feature_info": "features",
    "ImagePreprocessing": "preprocessing",
    "load_model": "saving",
    "save_model": "saving",
    "count_multiply_adds": "summary",
    "summary_table": "summary",
    "grad_cam": "explain",
    "get_recipe": "recipes",
    "plot_history": "curves",
    "report": "reports",
    # keras_resnet.lr_find is the module (its function: keras_resnet.lr_find.lr_find)
    "LRFindResult": "lr_find",
    "RangeTest": "lr_find",
}
# Modules that import TensorFlow, or modules that do: their public names above load on first
# use only, so that `import keras_resnet` on JAX or torch loads no TensorFlow.
_NEEDS_TENSORFLOW = frozenset({
    "data", "distribute", "evaluation", "export", "lr_find", "runs", "serving", "train",
    "training", "tuning",
})
# Submodules reached as attributes (``keras_resnet.data.load``), imported on first use: every
# public module and package in this folder, read from its files, so new ones are reachable.
_SUBMODULES = frozenset(module.name for module in pkgutil.iter_modules(__path__)
                        if not module.name.startswith("_"))
__all__ = sorted(_PUBLIC)


# The modules that register the layers a ``.keras`` file of ours may hold.
LAYER_MODULES = ("blocks", "builder", "heads", "preprocessing", "tasks")


def register_layers():
    """Import every module that registers a layer with Keras, so ``keras.saving.load_model``
    reads our files; ``import keras_resnet`` does it, except under the ``keras-resnet``
    command, whose loads call it (``keras_resnet.saving.load_model``).

    Example:
        >>> register_layers()
    """
    for module in LAYER_MODULES:
        importlib.import_module(f"keras_resnet.{module}")


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"keras_resnet.{_PUBLIC[name]}"), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"keras_resnet.{name}")
    raise AttributeError(f"module 'keras_resnet' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC) | _SUBMODULES)


# The `keras-resnet` command imports this package before keras_resnet.cli; it loads Keras only
# for the commands that need it (quietly unless --verbose), so `keras-resnet --help` prints at
# once, with no TensorFlow. Elsewhere KERAS_RESNET_QUIET=1 turns quiet output on before Keras
# loads (logs.quiet: no TensorFlow C++ log lines), for scripts whose first import loads it.
if os.path.basename(sys.argv[0] if sys.argv else "") != "keras-resnet":
    if os.environ.get("KERAS_RESNET_QUIET") == "1":
        importlib.import_module("keras_resnet.logs").quiet()
    for _module in sorted(set(_PUBLIC.values()) - _NEEDS_TENSORFLOW):
        importlib.import_module(f"keras_resnet.{_module}")
    globals().update({name: __getattr__(name) for name, module in _PUBLIC.items()
                      if module not in _NEEDS_TENSORFLOW})
