"""The per-pixel mean image of a training split (§4.2: "the per-pixel mean subtracted"),
computed in one pass and cached as ``.npy`` under ``data_dir/keras_resnet`` or
``$KERAS_HOME/keras_resnet`` (default ``~/.keras/keras_resnet``).
"""

import os
import warnings

import numpy as np
import tensorflow as tf

from keras_resnet.data.images import SCALE, resize_to_uint8
from keras_resnet.errors import InvalidArgument

_MEANS = {}


def _cache_dir(data_dir):
    if data_dir:
        return os.path.join(os.path.expanduser(os.fspath(data_dir)), "keras_resnet")
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "keras_resnet")


def mean_image(source, size, data_dir):
    """Per-pixel mean (size, size, 3) of the training split in [0, 1] units; one pass, cached."""
    key = f"{source.mean_key}_mean_{size}x{size}"
    path = None
    if source.cache_mean:
        path = os.path.join(_cache_dir(data_dir), f"{key}.npy")
    if (key, path) in _MEANS:
        return _MEANS[key, path]
    if path is not None and os.path.exists(path):
        _MEANS[key, path] = np.load(path)
        return _MEANS[key, path]
    dataset, _ = source.make(source.train_split)
    dataset = dataset.map(
        lambda x, y: resize_to_uint8(source.decode(x), size), num_parallel_calls=tf.data.AUTOTUNE
    ).batch(1024)
    total, count = np.zeros((size, size, 3), np.float64), 0
    for batch in dataset.as_numpy_iterator():
        total += batch.sum(axis=0, dtype=np.float64)
        count += len(batch)
    if count == 0:
        raise InvalidArgument(f"The training split of {source.name!r} is empty; no mean image.")
    mean = (total / count * SCALE).astype(np.float32)
    if path is not None:
        try:  # a cache, so failing to write it is no error
            os.makedirs(os.path.dirname(path), exist_ok=True)
            temporary = f"{path}.{os.getpid()}.tmp.npy"
            np.save(temporary, mean)
            os.replace(temporary, path)
        except OSError as error:
            warnings.warn(f"Could not cache the mean image at {path!r}: {error}", stacklevel=3)
    _MEANS[key, path] = mean
    return mean
