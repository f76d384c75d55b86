"""The package's public face: what ``import keras_resnet`` gives, each in a fresh interpreter."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
# Every public module and package of keras_resnet, read from its files.
MODULES = sorted(path.stem if path.suffix == ".py" else path.name
                 for path in (REPO / "keras_resnet").iterdir()
                 if not path.name.startswith("_")
                 and (path.suffix == ".py" or (path / "__init__.py").is_file()))


def _run(code, backend="tensorflow", argv0=None):
    """Runs ``code`` in a fresh interpreter (as the `keras-resnet` command when ``argv0`` is
    given) and returns the JSON it prints last."""
    prelude = f"import sys; sys.argv[0] = {argv0!r}\n" if argv0 else ""
    result = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True,
                            timeout=300, cwd=REPO,
                            env={**os.environ, "KERAS_BACKEND": backend})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.slow
def test_every_public_module_and_name_is_reachable():
    assert {"explain", "recipes", "evaluation", "errors", "data", "export"} <= set(MODULES)
    found = _run(f"""
import json, sys, types
import keras_resnet
from keras_resnet import explain, recipes
modules = {{name: isinstance(getattr(keras_resnet, name), types.ModuleType)
           and getattr(keras_resnet, name) is sys.modules["keras_resnet." + name] for name in {MODULES!r}}}
try:
    keras_resnet.no_such_name
    missing = None
except AttributeError as error:
    missing = str(error)
print(json.dumps(dict(
    modules=modules, missing=missing, listed=sorted(set({MODULES!r}) - set(dir(keras_resnet))),
    names=[name for name in keras_resnet.__all__ if not callable(getattr(keras_resnet, name))],
    grad_cam=keras_resnet.grad_cam is explain.grad_cam,
    get_recipe=keras_resnet.get_recipe is recipes.get_recipe,
    recipe=keras_resnet.get_recipe("paper").__class__.__name__)))
""")
    assert found["modules"] == {name: True for name in MODULES}
    assert found["missing"] == "module 'keras_resnet' has no attribute 'no_such_name'"
    assert found["listed"] == [] and found["names"] == []
    assert found["grad_cam"] and found["get_recipe"] and found["recipe"] == "Recipe"


@pytest.mark.slow
def test_import_loads_no_tensorflow_on_jax():
    found = _run("""
import json, sys
import keras_resnet
eager = "grad_cam" in vars(keras_resnet) and "get_recipe" in vars(keras_resnet)
before = "tensorflow" in sys.modules
keras_resnet.grad_cam, keras_resnet.get_recipe, keras_resnet.ResNet50, keras_resnet.explain
print(json.dumps(dict(before=before, after="tensorflow" in sys.modules, eager=eager,
                      backend=__import__("keras").backend.backend())))
""", backend="jax")
    assert found == {"before": False, "after": False, "eager": True, "backend": "jax"}


@pytest.mark.slow
def test_the_command_imports_the_package_without_keras():
    """`keras-resnet --help` stays instant: the package the command imports first loads no
    Keras and no submodule, and its names are still there on first use."""
    found = _run("""
import json, sys
import keras_resnet
before = sorted(m for m in sys.modules if m.split(".")[0] in ("keras", "tensorflow", "jax")
                or m.startswith("keras_resnet."))
print(json.dumps(dict(before=before, recipe=keras_resnet.get_recipe("paper").__class__.__name__,
                      after="keras_resnet.recipes" in sys.modules)))
""", backend="jax", argv0="/usr/local/bin/keras-resnet")
    assert found["before"] == ["keras_resnet.interrupts"]
    assert found["recipe"] == "Recipe" and found["after"]


@pytest.mark.slow
def test_the_command_loads_a_model_with_every_layer_of_ours(tmp_path):
    """Under `keras-resnet` nothing is imported up front; a load still knows every registered
    layer (blocks, stage taps, preprocessing, the Task)."""
    import keras_resnet

    path = str(tmp_path / "m.keras")
    keras_resnet.ResNet50V2(input_shape=(32, 32, 3), classes=3, width_multiplier=0.125).save(path)
    found = _run(f"""
import json
from keras_resnet import saving, tasks
model = saving.load_model({path!r}, compile=False)
print(json.dumps(dict(task=tasks.task_of(model).to_config(), layers=len(model.layers))))
""", argv0="/usr/local/bin/keras-resnet")
    assert found["task"] == {"kind": "classification", "classes": 3, "activation": "softmax",
                             "thresholds": None}
