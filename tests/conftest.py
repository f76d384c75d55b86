"""Shared fixtures, and the switch between the two tiers.

Plain ``pytest`` is the fast tier: every module with small models and data. ``pytest --all``
(the README's test command, CI's) adds the end-to-end tests marked ``slow``: the main job's
``keras-resnet train``, kills and resumes, notebooks, tuner searches, multi-process strategies,
full-size builds and exports.
"""

import fcntl
import json
import os
import subprocess
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import pytest  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--all", action="store_true", default=False,
                     help="also run the end-to-end tests marked slow (the README's test command)")


# The longest modules first, so the two workers (each takes whole modules, in collection
# order) start on them and finish together, instead of one ending alone on a long module.
LONGEST_FIRST = ("test_export.py", "test_constructors.py", "test_notebooks.py", "test_cli.py",
                 "test_features.py", "test_serving.py", "test_tuning.py", "test_backends.py")


def _module_rank(item):
    name = os.path.basename(str(item.fspath))
    return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(config, items):
    items.sort(key=_module_rank)  # stable: the order within a module stays
    if config.getoption("--all") or config.getoption("-m"):
        return  # `--all`, or an explicit -m expression, decides for itself
    skip = pytest.mark.skip(reason="end-to-end: runs with `pytest --all`")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


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


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory):
    """A folder every pytest-xdist worker of this session shares (its base temp's parent)."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


def made_once(shared_dir, name, make):
    """``make(folder)`` run by the first worker that asks, under a file lock; the others wait
    and reuse its folder. Returns the folder and what ``make`` returned (JSON)."""
    folder = shared_dir / name
    with open(shared_dir / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = shared_dir / f"{name}.json"
        if not done.exists():
            folder.mkdir(exist_ok=True)
            done.write_text(json.dumps(make(str(folder))))
        return str(folder), json.loads(done.read_text())


TINY_RUN_MODEL, TINY_RUN_EPOCHS = "resnet8", 8


@pytest.fixture(scope="session")
def tiny_run(shared_dir):
    """One ResNet-8 trained on digits by ``runs.train`` (which exports it), made once per test
    session and shared by every worker: ``(run_dir, result)``."""

    def make(folder):
        from keras_resnet import runs

        run_dir = os.path.join(folder, f"{TINY_RUN_MODEL}-digits")
        result = runs.train(TINY_RUN_MODEL, "digits", run_dir=run_dir, epochs=TINY_RUN_EPOCHS, verbose=0)
        return {"run_dir": run_dir, "test": result["test"]}

    _, made = made_once(shared_dir, "tiny_run", make)
    return made["run_dir"], made


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
