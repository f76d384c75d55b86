"""Quiet output: no TensorFlow C++ log lines, absl chatter or Keras warnings about settings
chosen on purpose. ``keras-resnet`` commands call :func:`quiet` unless given ``--verbose``;
a notebook can call it in its first cell, before Keras is imported.

Example:
    >>> from keras_resnet import logs
    >>> logs.quiet()  # before the first import of keras
"""

import contextlib
import os
import sys
import warnings

_quiet = False


@contextlib.contextmanager
def native_stderr_silenced():
    """Send file descriptor 2 to /dev/null for the block: TensorFlow's C++ runtime (and LiteRT)
    write a few lines while they load, before any log level applies. Python's own ``stderr``
    is flushed first, and restored after."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (some embedded interpreters): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def loading():
    """Silence native stderr for the block when :func:`quiet` is on (around a runtime load)."""
    if _quiet:
        with native_stderr_silenced():
            yield
    else:
        yield


def quiet():
    """Turn quiet output on: load Keras (and its backend) with native stderr silenced, set
    TensorFlow's C++ log level to errors only, absl's Python logging to errors, and ignore
    Keras' warnings. Progress bars, tables and results stay."""
    global _quiet
    _quiet = True
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # errors too: cuInit reports a missing GPU as one
    with native_stderr_silenced():
        import keras  # noqa: F401  (loads the backend, TensorFlow by default)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass
    warnings.filterwarnings("ignore", module=r"keras(\.|$)")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
