"""Every ``>>>`` example in the package's docstrings runs, as a doctest.

Each module's examples run in a fresh temporary working directory with the module's own names
and ``keras``, ``np``, ``tf`` and ``keras_resnet`` at hand. An example that needs what a test
machine lacks (a network, a trained run directory, a server) says so with ``# doctest: +SKIP``
and must still be valid Python, which is checked too.
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


def _compiles(source):
    """Whether an example (run or marked +SKIP) is at least valid Python."""
    try:
        compile(source, "<example>", "single")
    except SyntaxError:
        return False
    return True


# Modules whose examples train (runs: a run of ResNet-8 on digits; the backup's, the
# evaluation's), build many full-size networks (models, the segmentation and detection heads)
# or convert weight layouts run with `pytest --all`: each takes 2 s or more.
SLOW_EXAMPLES = ("keras_resnet.runs", "keras_resnet.models", "keras_resnet.heads.segmenters",
                 "keras_resnet.heads.detectors", "keras_resnet.evaluation", "keras_resnet.preprocessing",
                 "keras_resnet.train.backup", "keras_resnet.weights.layouts",
                 "keras_resnet.data.detection", "keras_resnet.weights.keras_applications")


@pytest.mark.parametrize("name", [pytest.param(m, marks=pytest.mark.slow) if m in SLOW_EXAMPLES else m
                                  for m in ["keras_resnet"] + MODULES])
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    policy = keras.config.dtype_policy()
    try:
        _run_examples(name)
    finally:
        keras.config.set_dtype_policy(policy)  # an example that changed it cannot leak it


def _run_examples(name):
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
    unparsable = [
        f"{test.name}: {example.source.strip()}"
        for test in tests for example in test.examples
        if not _compiles(example.source)
    ]
    assert not unparsable, f"examples that are not valid Python: {unparsable}"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
