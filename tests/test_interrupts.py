"""Ctrl-C and SIGTERM stop a command whatever it is doing (keras_resnet.interrupts)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from keras_resnet import interrupts

FIT_UNTIL_SIGNAL = """
import os, signal, sys, time
import keras, numpy as np
import keras_resnet
from keras_resnet import interrupts, training

interrupts.install("fit: interrupted.")

class SignalAt(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        if batch == 3:
            os.kill(os.getpid(), int(sys.argv[1]))
            self.sent = time.time()

    def on_train_batch_end(self, batch, logs=None):
        print("finished batch", batch, flush=True)

model = keras_resnet.CifarResNet(8)
model.compile("sgd", "sparse_categorical_crossentropy")
at = SignalAt()
try:
    model.fit(np.zeros((64, 32, 32, 3)), np.zeros(64), batch_size=4, epochs=1, verbose=0,
              callbacks=[at, training.StopOnSignal()])
except KeyboardInterrupt:
    print(f"stopped after {time.time() - at.sent:.3f} s", flush=True)
    sys.exit(130)
print("trained on", flush=True)
"""

# A command stuck where no callback runs (here: sleeping in C; in real life tracing, an import
# or an exporter): the watchdog ends it.
STUCK = """
import sys, time
sys.argv[0] = "keras-resnet"  # as the console script: the package defers loading Keras
from keras_resnet import interrupts
interrupts.install("stuck: interrupted.")
if len(sys.argv) > 1:  # a file and a folder being written (keras_resnet.saving.atomic_path)
    import os
    half_file = os.path.join(sys.argv[1], ".model_float32.tflite.x.tmp.tflite")
    open(half_file, "wb").close()
    half_folder = os.path.join(sys.argv[1], ".1.x.tmp")
    os.makedirs(os.path.join(half_folder, "variables"))
    interrupts.WRITING.update({half_file, half_folder})
print("ready", flush=True)
time.sleep(60)
print("slept on", flush=True)
"""


@pytest.mark.slow  # the fast tier stops `keras-resnet train` itself (tests/test_cli.py)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_training_stops_at_the_next_batch(signum):
    result = subprocess.run([sys.executable, "-c", FIT_UNTIL_SIGNAL, str(int(signum))],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 130, result.stdout + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    # The signal lands during batch 3: that batch finishes, then training stops.
    assert [line for line in lines if line.startswith("finished")][-1] == "finished batch 3"
    seconds = float(lines[-1].split()[2])
    assert lines[-1].startswith("stopped after") and seconds < interrupts.GRACE_SECONDS
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.slow  # 2 s or more of its own
def test_a_command_stuck_outside_training_ends_after_the_grace_period(signum, tmp_path):
    """Ended by the watchdog, it removes the temporaries it was writing."""
    process = subprocess.Popen([sys.executable, "-c", STUCK, str(tmp_path)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    sent = time.time()
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    elapsed = time.time() - sent
    assert process.returncode == 130 and err.strip() == "stuck: interrupted.", (out, err)
    assert "slept on" not in out
    assert interrupts.GRACE_SECONDS <= elapsed < 30  # 30: a loaded machine's scheduling
    assert os.listdir(tmp_path) == []


def test_atomic_path_names_its_temporary_while_it_writes(tmp_path):
    from keras_resnet.saving import atomic_path

    with atomic_path(tmp_path / "out.json") as tmp:
        assert tmp in interrupts.WRITING
        with open(tmp, "w") as f:
            f.write("{}")
    assert tmp not in interrupts.WRITING and os.listdir(tmp_path) == ["out.json"]


def test_a_second_signal_ends_at_once():
    """With a watchdog too long to matter, only the second signal can end the process."""
    patient = STUCK.replace("from keras_resnet import interrupts\n",
                            "from keras_resnet import interrupts\ninterrupts.GRACE_SECONDS = 600\n")
    process = subprocess.Popen([sys.executable, "-c", patient], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    # Signals that arrive before the handler runs count once, so send until it ends.
    deadline = time.time() + 60
    while process.poll() is None and time.time() < deadline:
        process.send_signal(signal.SIGINT)
        time.sleep(0.2)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 130 and err.strip() == "stuck: interrupted.", (out, err)


def test_nothing_is_requested_where_no_handler_was_installed():
    assert os.environ.get("PYTEST_CURRENT_TEST") and not interrupts.requested()


def _run_dir_moment(run_dir, name):
    """Whether the run in ``run_dir`` has reached the phase ``name`` (files that mark it)."""
    backup = os.path.join(run_dir, "backup")
    if name == "logs":  # TensorBoard's folder: the model is built, fit is starting
        return os.path.isdir(os.path.join(run_dir, "logs"))
    if name == "backup":  # the first epoch's backup is being written or just landed
        return os.path.isdir(backup) and bool(os.listdir(backup))
    if name == "export":  # training over: the final save and the export under way
        return os.path.isdir(os.path.join(run_dir, "export"))
    raise ValueError(name)


# Moments of a short `keras-resnet train`: seconds after the start (early and late in the
# imports, then the dataset, building, tracing, the first steps) and phases marked by the files
# the run writes. The first 0.1 s or so are Python's own start-up, before any code of ours runs:
# a signal there is Python's.
MOMENTS = [0.3, 1.0, 4.0, 6.0, "logs", "backup", "export"]
# Measured on a 2-core VM with a second process spinning and another test run beside it: stops
# took 3.1 s to 4.4 s (the watchdog's 3 s grace where no batch ends: imports, tracing, the
# export); the bound leaves room for a slower machine.
STOP_BOUND_SECONDS = 15


@pytest.mark.slow  # a dozen short runs
def test_a_signal_at_any_moment_of_train_stops_it_and_the_run_resumes(tmp_path):
    """SIGINT (and SIGTERM at every other moment) at each moment, with a second process
    loading the CPU while the run stops: exit 130 within the bound and one line, whole files
    only; killed after its first epoch's backup, the same command finishes the run from it
    (every other moment of a kill: tests/test_cli.py's kill-and-resume tests)."""
    results, spinner = [], None
    try:
        for index, moment in enumerate(MOMENTS):
            signum = signal.SIGTERM if index % 2 else signal.SIGINT
            run_dir = str(tmp_path / f"run{index}")
            # Only the export moment reaches the export (after one epoch: the backup moment
            # is the one that needs an epoch on each side); the others (and the resumed run,
            # whose export tests/test_cli.py's resumes check) skip it.
            export = moment == "export"
            command = ["keras-resnet", "train", "--model", "resnet8", "--epochs", "1" if export else "2",
                       "--output-dir", run_dir, *([] if export else ["--no-export"])]
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
            started = time.monotonic()
            while process.poll() is None:
                if (time.monotonic() - started >= moment if isinstance(moment, float)
                        else _run_dir_moment(run_dir, moment)):
                    break
                time.sleep(0.02)
            assert process.poll() is None, f"the run ended before {moment}"
            # The load spans the stop, the part the bound is on. The spinner runs at the
            # lowest priority: it loads a core left idle (as when this test runs alone) and
            # yields to the suite's other worker, which loads it as much.
            spinner = subprocess.Popen([sys.executable, "-c", "import os; os.nice(19)\nwhile True: pass"])
            process.send_signal(signum)
            sent = time.monotonic()
            out, err = process.communicate(timeout=120)
            took = time.monotonic() - sent
            spinner.kill()
            spinner.wait()
            spinner = None
            results.append((moment, signal.Signals(signum).name, process.returncode, round(took, 1)))
            assert process.returncode == 130, (moment, out[-2000:], err[-3000:])
            assert took < STOP_BOUND_SECONDS, results
            assert "Traceback" not in err and err.strip().splitlines()[-1] in (
                "keras-resnet train: interrupted.", "keras-resnet: interrupted."), err[-2000:]
            # Whole files only, and a backup (if any) that the next run reads.
            left = [os.path.join(d, n) for d, _, names in os.walk(run_dir) for n in names]
            assert not [p for p in left if ".tmp" in os.path.basename(p)], left
            state = os.path.join(run_dir, "backup", "state.json")
            if os.path.exists(state):
                with open(state) as f:
                    json.load(f)
            if moment == "backup":  # the one moment with an epoch on both sides: resume it
                resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
                assert resumed.returncode == 0, (moment, resumed.stderr[-3000:])
                assert "Resuming from the backup" in resumed.stdout
                with open(os.path.join(run_dir, "history.csv")) as f:
                    assert len(f.read().strip().splitlines()) == 1 + 2  # header, both epochs
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
        print("signal, moment, exit status, seconds to stop:", results)
