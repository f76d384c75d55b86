"""Training: the run configuration, compiling, callbacks, backups, schedules and the
train/fine-tune flow.

Modules, from the bottom up: ``compile`` (optimizer, weight decay, and the task's loss,
metrics and head), ``schedules`` (the paper's learning-rate schedules), ``backup`` (back up a
run, resume it), ``callbacks`` (the paper's callbacks for a run directory), ``config`` (the
:class:`RunConfig`), ``setup``, ``build`` and ``results`` (the steps of a run), and ``flow``
(a run as a list of phases). The names below are imported on first use, so the low modules
load without the flow.

Example:
    >>> config = keras_resnet.train.RunConfig.from_options("resnet8", "digits", epochs=1)
    >>> keras_resnet.train.run(config)  # doctest: +SKIP
"""

import importlib

_PUBLIC = {
    "run": "flow", "train": "flow", "fine_tune": "flow", "Phase": "flow",
    "RunConfig": "config", "DataConfig": "config", "RecipeConfig": "config",
    "HardwareConfig": "config", "OutputConfig": "config", "FineTuneConfig": "config",
    "resolve": "config",
    "compile_model": "compile", "paper_callbacks": "callbacks", "restore_backup": "backup",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"keras_resnet.train.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module 'keras_resnet.train' has no attribute {name!r}")
