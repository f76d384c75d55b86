"""Files written whole or not at all, and ``.keras`` models loaded with a clear error.

Every file the package writes goes to a temporary name in the same folder and is renamed into
place (``os.replace`` is atomic on POSIX and Windows), so a reader, or a run restarted after a
kill, sees the old file or the new one, never half of one.

Example:
    >>> save_model(keras_resnet.ResNet20(), "r20.keras")
    'r20.keras'
    >>> load_model("r20.keras").name
    'resnet20'
"""

import contextlib
import glob
import json
import os
import shutil
import tempfile
import zipfile

import keras

from keras_resnet import interrupts
from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet.errors import InvalidArgument

# Written by keras_resnet 0.1's `train` beside Keras' own entries in the .keras zip.
LEGACY_PREPROCESSING_ENTRY = "keras_resnet_preprocessing.json"


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    The temporary file (or folder) is removed when the block fails. ``suffix`` ends the
    temporary name (Keras wants ``.keras`` / ``.weights.h5``).

    Example:
        >>> with atomic_path("out.json") as tmp:
        ...     _ = open(tmp, "w").write("{}")
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    for stale in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(os.path.basename(path))}.*.tmp{suffix}")):
        _remove(stale)  # left by a writer that was killed mid-write
    handle, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=f".tmp{suffix}",
                                   dir=folder)
    os.close(handle)
    os.remove(tmp)  # writers create it themselves (some refuse an existing file)
    interrupts.WRITING.add(tmp)  # removed by a command that a signal ends mid-write
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        _remove(tmp)
        interrupts.WRITING.discard(tmp)


def _remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)


def write_text(path, text):
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def write_json(path, value):
    """Write ``value`` as indented JSON to ``path`` atomically (numbers as floats)."""
    write_text(path, json.dumps(value, indent=2, default=float))


def save_model(model, path):
    """``model.save(path)`` atomically.

    Example:
        >>> save_model(keras_resnet.ResNet20(), "runs/r20/model.keras")
        'runs/r20/model.keras'
    """
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
    return path


def _legacy_preprocessing(path):
    """The preprocessing an older ``train`` stored in the zip, as an ImagePreprocessing."""
    with zipfile.ZipFile(path) as archive:
        if LEGACY_PREPROCESSING_ENTRY not in archive.namelist():
            return None
        return preprocessing_lib.from_any_config(
            json.loads(archive.read(LEGACY_PREPROCESSING_ENTRY))
        )


def check_model_file(path):
    """Raise ValueError unless ``path`` is a readable ``.keras`` file (names what is wrong)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise InvalidArgument(f"{path!r} is a directory, not a .keras file.")
    if not os.path.exists(path):
        raise InvalidArgument(f"Model file {path!r} does not exist.")
    if not path.endswith(".keras"):
        raise InvalidArgument(f"Model file {path!r} is not a .keras file.")
    if not zipfile.is_zipfile(path):
        raise InvalidArgument(
            f"Model file {path!r} is not a valid .keras file (not a zip archive: truncated or "
            "corrupt?)."
        )


def load_model(path, compile=True):
    """Load a ``.keras`` model; ValueError naming the file when it cannot be loaded.

    A file written by an older ``keras-resnet train`` (preprocessing in a side entry of the
    zip) loads with that preprocessing attached.

    Example:
        >>> _ = save_model(keras_resnet.ResNet20(), "r20.keras")
        >>> preprocessing_lib.of(load_model("r20.keras")).source
        'default'
    """
    import keras_resnet

    keras_resnet.register_layers()

    check_model_file(path)
    try:
        model = keras.saving.load_model(path, compile=compile)
    except Exception as error:  # Keras raises many kinds; all mean "cannot load this file"
        raise InvalidArgument(
            f"Model file {os.fspath(path)!r} cannot be loaded: {type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}"
        ) from error
    if preprocessing_lib.of(model) is None:
        legacy = _legacy_preprocessing(path)
        if legacy is not None:
            model = preprocessing_lib.attach(model, legacy)
    return model
