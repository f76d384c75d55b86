"""Ctrl-C and SIGTERM that always stop a ``keras-resnet`` command.

Python's default SIGINT handler raises ``KeyboardInterrupt`` wherever the main thread happens to
be; raised inside a garbage-collection callback, a finaliser or a weakref callback (JAX
registers one, and TensorFlow's converter imports JAX), it is printed and swallowed, and the
command goes on. So :func:`install` replaces the handlers with one that only records the signal:

- training stops at the next batch (:class:`keras_resnet.training.StopOnSignal` raises
  ``KeyboardInterrupt`` from the main flow, where nothing swallows it), with its backup intact;
- anything else (start-up, tracing, export) is ended by a watchdog ``GRACE_SECONDS`` after the
  signal, and a second signal ends the process at once. Either way the command's one line is
  printed and the exit status is 130. Every file is written under a temporary name and renamed
  (``keras_resnet.saving.atomic_path``), and ending at once removes the temporaries being
  written (:data:`WRITING`), so it leaves whole files only.

Importing this module imports nothing heavy.

Example:
    >>> requested()
    False
"""

import os
import shutil
import signal
import sys
import threading

GRACE_SECONDS = 3.0
EXIT_STATUS = 130
_state = {"signals": 0, "message": None, "announced": False}
# The temporaries being written (keras_resnet.saving.atomic_path adds and discards them).
WRITING = set()


def requested():
    """True once SIGINT or SIGTERM arrived in a process that called :func:`install`."""
    return _state["signals"] > 0


def announce():
    """Print the command's interrupted line once (from whichever path gets there first), on
    the stderr the command started with: a signal can land while a runtime loads with file
    descriptor 2 silenced (keras_resnet.logs)."""
    if _state["message"] and not _state["announced"]:
        _state["announced"] = True
        sys.stdout.flush()
        if _state.get("stderr") is None:
            print(_state["message"], file=sys.stderr, flush=True)
            return
        sys.stderr.flush()
        os.write(_state["stderr"], (_state["message"] + "\n").encode())


def remove_temporaries():
    """Remove every temporary in :data:`WRITING` (a command ended at once leaves none)."""
    for path in list(WRITING):
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            try:
                os.remove(path)
            except OSError:
                pass


def _end_now():
    try:
        announce()
        remove_temporaries()
    finally:
        os._exit(EXIT_STATUS)


def _handler(signum, frame):
    _state["signals"] += 1
    if _state["signals"] > 1:
        _end_now()
    watchdog = threading.Timer(GRACE_SECONDS, _end_now)
    watchdog.daemon = True
    watchdog.start()


def install(message):
    """Handle SIGINT and SIGTERM as described above; ``message`` is the line to print.

    Call it from the main thread of a command-line process (not a library or notebook).

    Example:
        >>> install("keras-resnet train: interrupted.")  # doctest: +SKIP
    """
    # A signal that came before (the package installs a first handler as the console script
    # starts) is kept: the command then ends as it begins.
    _state.update(message=message, announced=False)
    if _state.get("stderr") is None:
        try:
            _state["stderr"] = os.dup(2)
        except OSError:  # no file descriptor 2: print to sys.stderr, whatever it is
            pass
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _handler)
