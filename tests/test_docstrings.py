"""Every ``>>>`` example in the package's docstrings runs, as a doctest.

Each module's examples run in a fresh temporary working directory with the module's own names
and ``keras``, ``np``, ``tf`` and ``keras_resnet`` at hand. An example that needs what a test
machine lacks (a network, a trained run directory, a server) says so with ``# doctest: +SKIP``
and stays correct code.
"""

import doctest
import importlib
import pkgutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_resnet

MODULES = sorted(
    name for _, name, _ in pkgutil.walk_packages(keras_resnet.__path__, "keras_resnet.")
    if name != "keras_resnet.__main__"
)


@pytest.mark.parametrize("name", ["keras_resnet"] + MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    extra = {"keras": keras, "np": np, "tf": tf, "keras_resnet": keras_resnet}
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    tests = finder.find(module, name, globs={**vars(module), **extra})
    for test in sorted(tests, key=lambda t: t.name):
        if test.filename and not test.filename.startswith(module.__file__.rsplit("/", 1)[0]):
            continue  # names imported from elsewhere are tested in their own module
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
