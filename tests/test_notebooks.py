"""Every notebook under notebooks/ runs top to bottom with small settings, without errors.

Each notebook is executed in a fresh ``python3`` kernel by nbclient (two notebooks at a time),
in a temporary working directory, with ``KERAS_RESNET_SMALL=1`` (the notebooks' parameters cell reads it and shrinks
every size knob). The committed notebooks are executed at full settings, so a reader sees their
outputs on GitHub; the checks on the files themselves make sure they stay that way.

No output, committed or executed here, holds TensorFlow's C++ log lines or Python warnings: each
notebook's first code cell calls ``keras_resnet.logs.quiet()`` before Keras loads. The first
notebook runs as Jupyter runs it (file descriptor 2 captured into the outputs), which shows that
the first cell keeps the C++ log lines out of everything after it.
"""

import fnmatch
import glob
import os
import re
import subprocess
import sys
import time

import nbclient  # noqa: E402, F401  (the test extra installs them; EXECUTE runs it)
import nbformat  # noqa: E402
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
CELL_TIMEOUT = 600  # seconds per cell; small settings need a fraction of it
# What the notebooks write to file descriptor 2 themselves (C++ libraries) stays in the kernel's
# own stderr instead of landing in the cell outputs, except in the notebooks below.
KERNEL_ARGUMENTS = ["--IPKernelApp.capture_fd_output=False"]
# Run as Jupyter runs them: file descriptor 2 captured into the cell outputs, and no
# TF_CPP_MIN_LOG_LEVEL from outside (the first cell sets it). Their outputs, checked for log
# lines, show that the first cell, then TensorFlow's first operations, print none.
AS_JUPYTER_RUNS_THEM = NOTEBOOKS[:1]
# TensorFlow's C++ (absl / glog) log lines: "I0000 00:00:1796118069.416021   23847 file.cc:31] ..."
# (severity I/W/E/F, MMDD, time, thread, file:line]), absl's note before it is set up, and the
# lines of TensorFlow's Python logger ("INFO:tensorflow:Assets written to: ...").
NATIVE_LOG_LINE = re.compile(
    r"^[IWEF]\d{4} \d\d:\d\d:\d+(\.\d+)?\s+\d+ \S+:\d+\]"
    r"|^WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|^(INFO|WARNING|ERROR):tensorflow:",
    re.MULTILINE,
)
# A Python warning as the warnings module prints it: "path.py:74: UserWarning: message".
PYTHON_WARNING = re.compile(r"^\S+:\d+: \w*Warning: ", re.MULTILINE)


def ignored(name):
    """Whether .gitignore ignores a top-level entry ``name`` (runs/, exports/, ...)."""
    try:
        with open(os.path.join(ROOT, ".gitignore")) as f:
            patterns = [line.strip().strip("/") for line in f if line.strip() and not line.startswith("#")]
    except OSError:
        patterns = []
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns + ["runs"])


def notebook_id(path):
    return os.path.basename(path)


def read(path):
    return nbformat.read(path, as_version=4)


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def is_parameters(cell):
    return "parameters" in cell.get("metadata", {}).get("tags", [])


def errors(notebook):
    """``(cell index, ename, evalue)`` of every error output."""
    found = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                found.append((index, output.get("ename"), output.get("evalue")))
    return found


def output_texts(notebook):
    """``(cell index, output name, text)`` of every text an output shows: streams, plain-text
    results, tracebacks."""
    found = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                found.append((index, output.get("name"), output.get("text", "")))
            elif output.get("output_type") == "error":
                found.append((index, "error", "\n".join(output.get("traceback", []))))
            else:
                text = output.get("data", {}).get("text/plain", "")
                found.append((index, output.get("output_type"), "".join(text)))
    return found


def noise(notebook):
    """``(cell index, line)`` of every C++ log line and Python warning in the outputs."""
    found = []
    for index, _name, text in output_texts(notebook):
        for pattern in (NATIVE_LOG_LINE, PYTHON_WARNING):
            for match in pattern.finditer(text):
                line_end = text.find("\n", match.start())
                found.append((index, text[match.start():line_end if line_end >= 0 else None][:200]))
    return found


def test_noise_patterns_match_what_tensorflow_and_python_print():
    samples = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796118069.416021   23847 cudart_stub.cc:31] Could not find cuda drivers",
        "E0000 00:00:1796118085.165111   23847 cuda_platform.cc:52] failed call to cuInit: INTERNAL",
        "W0000 00:00:1796118085.165111   23847 gpu_device.cc:2342] Cannot dlopen some GPU libraries.",
        "/x/keras/src/trainers/epoch_iterator.py:74: UserWarning: `shuffle=True` was passed",
        "INFO:tensorflow:Assets written to: /tmp/export/assets",
    ]
    for sample in samples:
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
            outputs=[nbformat.v4.new_output("stream", name="stderr", text=f"ok\n{sample}\n")]
        )])
        assert noise(notebook) == [(0, sample[:200])]
    clean = "Epoch 1/2\n40/40 - 11s - 265ms/step - loss: 1.9333 - top1: 0.4047\nI0 is not a log line\n"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        outputs=[nbformat.v4.new_output("stream", name="stdout", text=clean)]
    )])
    assert noise(notebook) == []


def test_notebooks_are_found():
    assert len(NOTEBOOKS) >= 4, f"expected the notebooks under {ROOT}/notebooks, found {NOTEBOOKS}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=notebook_id)
def test_notebook_has_one_parameters_cell_first(path):
    notebook = read(path)
    cells = code_cells(notebook)
    tagged = [cell for cell in cells if is_parameters(cell)]
    assert len(tagged) == 1, f"{notebook_id(path)}: {len(tagged)} cells tagged 'parameters', expected 1"
    assert cells and is_parameters(cells[0]), "the parameters cell must be the first code cell"
    assert "KERAS_RESNET_SMALL" in tagged[0].source
    assert "logs.quiet()" in tagged[0].source, (
        f"{notebook_id(path)}: the first code cell must call keras_resnet.logs.quiet()"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=notebook_id)
def test_committed_notebook_holds_its_outputs(path):
    # The notebooks are committed executed: every code cell ran, in order, without errors.
    notebook = read(path)
    cells = code_cells(notebook)
    unexecuted = [cell.source.splitlines()[0] if cell.source else "" for cell in cells
                  if not is_parameters(cell) and cell.execution_count is None]
    assert not unexecuted, f"{notebook_id(path)}: cells without outputs: {unexecuted}"
    counts = [cell.execution_count for cell in cells if cell.execution_count is not None]
    assert counts == sorted(counts), f"{notebook_id(path)}: cells were run out of order: {counts}"
    assert not errors(notebook), f"{notebook_id(path)}: committed with errors {errors(notebook)}"
    assert not noise(notebook), f"{notebook_id(path)}: committed with log lines or warnings {noise(notebook)}"


# Executes one notebook in a fresh kernel (its own process, so two notebooks can run at once).
EXECUTE = """
import sys
import nbclient, nbformat
from nbclient.exceptions import CellExecutionError
source, target, workdir, timeout = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
notebook = nbformat.read(source, as_version=4)
client = nbclient.NotebookClient(notebook, kernel_name="python3", timeout=timeout,
                                 extra_arguments=sys.argv[5:], resources={"metadata": {"path": workdir}})
try:
    client.execute()
except CellExecutionError as error:
    print(str(error)[-4000:], file=sys.stderr)
nbformat.write(notebook, target)
"""
PARALLEL_NOTEBOOKS = 2  # kernels at once: one trains while the other imports or traces


@pytest.fixture(scope="session")
def small_runs(tmp_path_factory):
    """Every notebook executed with ``KERAS_RESNET_SMALL=1``, two at a time:
    ``{path: (executed notebook or None, its working directory, stderr)}``."""
    as_jupyter = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    as_jupyter["KERAS_RESNET_SMALL"] = "1"
    env = {**as_jupyter, "TF_CPP_MIN_LOG_LEVEL": "2"}
    pending, running, done = list(NOTEBOOKS), {}, {}
    while pending or running:
        while pending and len(running) < PARALLEL_NOTEBOOKS:
            path = pending.pop(0)
            workdir = tmp_path_factory.mktemp(notebook_id(path).removesuffix(".ipynb"))
            target = str(workdir.parent / (workdir.name + "-executed.ipynb"))
            captured = path in AS_JUPYTER_RUNS_THEM
            with open(target + ".stderr", "w") as stderr:  # a file: a pipe could fill and block
                process = subprocess.Popen(
                    [sys.executable, "-c", EXECUTE, path, target, str(workdir), str(CELL_TIMEOUT),
                     *([] if captured else KERNEL_ARGUMENTS)], env=as_jupyter if captured else env,
                    stdout=subprocess.DEVNULL, stderr=stderr,
                )
            running[path] = (process, target, workdir)
        for path, (process, target, workdir) in list(running.items()):
            if process.poll() is not None:
                with open(target + ".stderr") as f:
                    stderr = f.read()
                executed = read(target) if os.path.exists(target) else None
                done[path] = (executed, workdir, stderr)
                del running[path]
        time.sleep(0.2)
    return done


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=notebook_id)
def test_notebook_runs_with_small_settings(path, small_runs):
    notebook, workdir, stderr = small_runs[path]
    assert notebook is not None, f"{notebook_id(path)} was not executed:\n{stderr[-4000:]}"
    assert not errors(notebook), f"{notebook_id(path)} failed:\n{stderr[-4000:]}"
    assert all(cell.execution_count is not None for cell in code_cells(notebook)), stderr[-4000:]
    assert not noise(notebook), f"{notebook_id(path)}: log lines or warnings in the outputs {noise(notebook)}"
    # Nothing is left in the working directory but what git ignores (runs/, exports/, ...).
    leftovers = [name for name in os.listdir(workdir) if not ignored(name)]
    assert not leftovers, f"{notebook_id(path)} left files in its working directory: {leftovers}"
