"""Ctrl-C and SIGTERM stop a command whatever it is doing (keras_resnet.interrupts)."""

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
def test_a_command_stuck_outside_training_ends_after_the_grace_period(signum):
    process = subprocess.Popen([sys.executable, "-c", STUCK], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    sent = time.time()
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    elapsed = time.time() - sent
    assert process.returncode == 130 and err.strip() == "stuck: interrupted.", (out, err)
    assert "slept on" not in out
    assert interrupts.GRACE_SECONDS <= elapsed < 30  # 30: a loaded machine's scheduling


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
