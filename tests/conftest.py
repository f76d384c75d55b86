"""Shared fixtures, and the switch between the two tiers.

Plain ``pytest`` is the fast tier: every module with small models and data. ``pytest --all``
(the README's test command, CI's) adds the end-to-end tests marked ``slow``: the main job's
``keras-resnet train``, kills and resumes, notebooks, tuner searches, multi-process strategies,
full-size builds and exports. Two workers run them on a schedule that keeps both busy to the
end (below: units of tests that share a fixture, longest first).
"""

import ast
import fcntl
import functools
import json
import os
import pathlib

import pytest

# Before any test module imports Keras. Keras itself is imported where a fixture needs it: the
# pytest-xdist controller loads this file too, and needs no TensorFlow (5 s at every start).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def pytest_addoption(parser):
    parser.addoption("--all", action="store_true", default=False,
                     help="also run the end-to-end tests marked slow (the README's test command)")


# The schedule of `pytest -n 2` (setup.cfg: `--dist loadgroup --no-loadscope-reorder`, with the
# units below as the groups): each worker takes one unit of work at a time, in collection
# order, and the next when it is almost done. A unit is every test of a module that shares a
# fixture made once per worker (scope module or session): it runs whole on one worker, so the
# fixture is made once. Any other test is a unit of its own, free to go to whichever worker is
# free first. The units run longest first (as far as known: those with end-to-end tests, then
# the module's rank below), and the many short free tests last, so both workers keep busy to the
# end instead of one ending alone on a long module. (pytest-xdist's own loadgroup reads
# xdist_group marks, which it cannot attach under pytest 9, and orders units by test count.)
# The README's longest: the harness (its preparation, then each case's exports) first, the
# single longest unit; the notebooks after the tuner searches and the main job's run, so that
# their two kernels miss the harness's preparation (both hold gigabytes).
LONGEST_FIRST = ("test_constructors.py", "test_tuning.py", "test_cli.py", "test_notebooks.py",
                 "test_generated_docs.py",
                 "test_export.py", "test_segmentation_export.py", "test_interrupts.py",
                 "test_serving.py", "test_backends.py", "test_segmentation_models.py",
                 "test_features.py", "test_family.py", "test_weights.py", "test_multilabel.py",
                 "test_explain.py", "test_distribute.py", "test_recipes.py", "test_docstrings.py",
                 "test_metrics.py", "test_losses.py", "test_models.py", "test_training.py")
# Fixtures of scope module or session that may be made on both workers: made in seconds, or
# shared across workers already (`made_once`). A test that uses only these is free.
REPEATABLE_FIXTURES = frozenset({
    "shared_dir", "tiny_run",  # made once for all workers
    "trained", "digits_test", "raw_digits", "digit_pngs",  # tests/test_export.py: tiny_run read
    "export_dir", "reference", "china",  # tests/test_serving.py: a ResNet-8 SavedModel, a photo
    "digits_model",  # tests/test_explain.py: tiny_run's model loaded
})


def _module_rank(item):
    name = os.path.basename(str(item.fspath))
    return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)


@functools.cache
def _definitions(path):
    """Read from the source of the test module at ``path``: its fixtures ``{name: (scope,
    arguments)}`` and its tests ``{name: arguments}``."""
    fixtures, tests = {}, {}
    for node in ast.walk(ast.parse(pathlib.Path(path).read_text())):
        if not isinstance(node, ast.FunctionDef):
            continue
        arguments = [argument.arg for argument in node.args.args]
        for decorator in node.decorator_list:
            function = decorator.func if isinstance(decorator, ast.Call) else decorator
            if getattr(function, "attr", getattr(function, "id", "")) == "fixture":
                keywords = {k.arg: k.value.value for k in getattr(decorator, "keywords", [])
                            if isinstance(k.value, ast.Constant)}
                fixtures[keywords.get("name", node.name)] = (keywords.get("scope", "function"), arguments)
        if node.name.startswith("test_") and node.name not in fixtures:
            tests[node.name] = arguments
    return fixtures, tests


@functools.cache
def _module_units(path):
    """``{test name: unit}`` of a test module: the tests that share a fixture made once per
    worker, through their arguments and the fixtures those name, get one unit (named after a
    fixture); the others None."""
    module_fixtures, tests = _definitions(path)
    fixtures = {**_definitions(__file__)[0], **module_fixtures}
    owner = {}  # union-find over the shared fixtures: fixture -> the unit it joined

    def root(name):
        while owner.get(name, name) != name:
            name = owner[name]
        return name

    bound = {}
    for test, arguments in tests.items():
        used, pending = set(), list(arguments)
        while pending:
            name = pending.pop()
            if name in fixtures and name not in used:
                used.add(name)
                pending.extend(fixtures[name][1])
        bound[test] = {root(name) for name in used - REPEATABLE_FIXTURES
                       if fixtures[name][0] in ("module", "package", "session")}
        for name in bound[test]:
            owner[name] = min(bound[test])
    return {test: root(min(names)) if names else None for test, names in bound.items()}


def unit_of(nodeid, rootdir):
    """The unit of work of the test ``nodeid``: ``"file::fixture"`` or the nodeid itself."""
    path, _, rest = nodeid.partition("::")
    test = rest.split("::")[-1].split("[")[0]
    unit = _module_units(str(pathlib.Path(rootdir) / path)).get(test) if path.endswith(".py") else None
    return f"{path}::{unit}" if unit else nodeid


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadgroup``: pytest-xdist's scheduling of whole units, with the units above."""
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    # The fast tier keeps each module whole on one worker (its module state warm: measured
    # 3 min 16 s against 3 min 44 s with the units below); `--all` balances its long units.
    whole_modules = not config.getoption("--all")

    class UnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):  # as pytest-xdist's loadfile and loadgroup do
            return nodeid.split("::")[0] if whole_modules else unit_of(nodeid, config.rootpath)

    return UnitScheduling(config, log)


def _schedule(config, items):
    """Orders the items longest unit first (the order in which the workers take them)."""
    units = {item.nodeid: unit_of(item.nodeid, config.rootpath) for item in items}
    end_to_end = config.getoption("--all") or bool(config.getoption("-m"))
    slow_units = {units[item.nodeid] for item in items if end_to_end and "slow" in item.keywords}

    def order(indexed):
        index, item = indexed
        unit = units[item.nodeid]
        shared = unit != item.nodeid
        tier = (0 if shared else 1) if unit in slow_units else (2 if shared else 3)
        return tier, _module_rank(item), unit if shared else "", index

    items[:] = [item for _, item in sorted(enumerate(items), key=order)]


def pytest_collection_modifyitems(config, items):
    _schedule(config, items)
    if config.getoption("--all") or config.getoption("-m"):
        return  # `--all`, or an explicit -m expression, decides for itself
    skip = pytest.mark.skip(reason="end-to-end: runs with `pytest --all`")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seeded_float32():
    """Every test starts seeded, in float32, and leaves the global policy as it found it."""
    import keras

    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture(scope="session", autouse=True)
def _own_keras_home(tmp_path_factory):
    """$KERAS_HOME in a folder of the session's, for the tests and the commands they start:
    what the package caches there (the measured training precision, mean images, weights)
    never comes from or goes to the user's own ~/.keras."""
    previous = os.environ.get("KERAS_HOME")
    os.environ["KERAS_HOME"] = str(tmp_path_factory.mktemp("keras_home"))
    yield
    if previous is None:
        os.environ.pop("KERAS_HOME", None)
    else:
        os.environ["KERAS_HOME"] = previous


@pytest.fixture(scope="session")
def named_model():
    """Build each named model once per session: ``named_model("resnet50")``, for what reads
    shapes only (names, counts, multiply-adds): its variables have shapes and no values
    (``harness.shapes_only``: drawing ResNet-1202's 19M random weights took most of its build)."""
    import keras_resnet
    from harness import shapes_only

    cache = {}

    def get(name):
        if name not in cache:
            with shapes_only():
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
