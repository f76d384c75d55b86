"""Every notebook under notebooks/ runs top to bottom with small settings, without errors.

Each notebook is executed in a fresh ``python3`` kernel by nbclient, in a temporary working
directory, with ``KERAS_RESNET_SMALL=1`` (the notebooks' parameters cell reads it and shrinks
every size knob). The committed notebooks are executed at full settings, so a reader sees their
outputs on GitHub; the checks on the files themselves make sure they stay that way.
"""

import fnmatch
import glob
import os

import pytest

import nbclient  # noqa: E402  (the test extra installs them)
import nbformat  # noqa: E402
from nbclient.exceptions import CellExecutionError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
CELL_TIMEOUT = 600  # seconds per cell; small settings need a fraction of it
# C++ log lines of TensorFlow (written to the process' stderr before logging is set up) stay in
# the kernel's own stderr instead of landing in the cell outputs.
KERNEL_ARGUMENTS = ["--IPKernelApp.capture_fd_output=False"]


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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=notebook_id)
def test_notebook_runs_with_small_settings(path, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_RESNET_SMALL", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    notebook = read(path)
    client = nbclient.NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        extra_arguments=KERNEL_ARGUMENTS,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    try:
        client.execute()
    except CellExecutionError as error:
        pytest.fail(f"{notebook_id(path)} failed:\n{str(error)[-4000:]}", pytrace=False)
    assert not errors(notebook)
    assert all(cell.execution_count is not None for cell in code_cells(notebook))
    # Nothing is left in the working directory but what git ignores (runs/, exports/, ...).
    leftovers = [name for name in os.listdir(tmp_path) if not ignored(name)]
    assert not leftovers, f"{notebook_id(path)} left files in its working directory: {leftovers}"
