import os
import subprocess
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded_float32():
    """Every test starts seeded, in float32, and leaves the global policy as it found it."""
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture(scope="session")
def named_model():
    """Build each named model once per session: ``named_model("resnet50")``."""
    import keras_resnet

    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = keras_resnet.get_model(name)
        return cache[name]

    return get


# The README's main job is `keras-resnet train` with no flags (40 epochs, 98.1% test top-1 with
# the default seed, minutes on 2 cores). The suite runs it with every default but a fifth of the
# epochs: the same code path from command line to export, in a time a test suite can afford.
DEFAULT_RUN_EPOCHS = 8


@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    """`keras-resnet train --epochs 8`: the main job's defaults in all else."""
    cwd = tmp_path_factory.mktemp("default")
    started = time.time()
    result = subprocess.run(["keras-resnet", "train", "--epochs", str(DEFAULT_RUN_EPOCHS)],
                            capture_output=True, text=True, timeout=900, cwd=cwd)
    return result, os.path.join(cwd, "runs", "resnet20-digits"), time.time() - started
