"""Weight files: reading every supported format into NumPy arrays, and downloading them.

Nothing is ever unpickled: safetensors through ``safetensors.numpy``, ``.npz`` with
``allow_pickle=False``, ``.pth``/``.pt`` only through ``torch.load(..., weights_only=True)``
(and only where PyTorch is installed), Keras ``.weights.h5`` through h5py.

Example:
    >>> from safetensors.numpy import save_file
    >>> save_file({"conv1.weight": np.zeros((64, 3, 7, 7), np.float32)}, "r18.safetensors")
    >>> tensors, layout = read("r18.safetensors")
    >>> layout, tensors["conv1.weight"].shape
    ('torch', (64, 3, 7, 7))
"""

import hashlib
import importlib
import importlib.util
import os
from collections.abc import Mapping

import numpy as np

from keras_resnet.errors import InvalidArgument

SUFFIXES = (".weights.h5", ".safetensors", ".pth", ".pt", ".npz")
CACHE_SUBDIR = "keras_resnet"
# Keras' own weights file of a keras_resnet model holds our block layers by class name.
_OWN_H5_GROUPS = ("residual_block", "bottleneck_block")
# keras-hub preset folders: the backbone's weights and the classifier head's.
KERAS_HUB_BACKBONE_FILE = "model.weights.h5"
KERAS_HUB_HEAD_FILE = "task.weights.h5"


def _torch():
    """PyTorch, or None where it is not installed (it is no dependency of keras_resnet)."""
    if importlib.util.find_spec("torch") is None:
        return None
    return importlib.import_module("torch")


def _no_torch_message(path):
    return (
        f"`weights` file {path!r} is a PyTorch pickle (.pth/.pt); keras_resnet reads those only "
        "through torch.load(..., weights_only=True), and PyTorch is not installed. Install "
        "torch, or convert the file once where torch is installed: python -c \"import torch, "
        "safetensors.torch as st; st.save_file(torch.load('IN.pth', weights_only=True), "
        "'OUT.safetensors')\" and pass weights='OUT.safetensors'. torchvision's published "
        "weights exist as safetensors already: weights='timm_tv_in1k' (V1), 'timm_tv2_in1k' (V2)."
    )


def kind(path):
    """What ``path`` holds: "torch" (.safetensors/.pth/.pt/.npz, a torchvision/timm state
    dict), "own" (a keras_resnet .weights.h5), "keras_hub" (a keras-hub ResNet .weights.h5
    or preset folder).

    Example:
        >>> np.savez("state.npz", **{"fc.bias": np.zeros(3)})
        >>> kind("state.npz")
        'torch'
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, KERAS_HUB_BACKBONE_FILE)):
            return "keras_hub"
        raise InvalidArgument(
            f"`weights` folder {path!r} is no keras-hub preset (it has no "
            f"{KERAS_HUB_BACKBONE_FILE}); pass a weights file instead."
        )
    if not path.endswith(SUFFIXES):
        raise InvalidArgument(
            f"`weights` must be None, a weight set name or a path to a "
            f"{', '.join(SUFFIXES)} file (or a keras-hub preset folder); got {path!r}."
        )
    if not os.path.exists(path):
        raise InvalidArgument(f"`weights` file {path!r} does not exist.")
    if path.endswith(".weights.h5"):
        return "own" if _is_own_h5(path) else "keras_hub"
    return "torch"


def _open_h5(path):
    import h5py  # Keras' own dependency

    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise InvalidArgument(
            f"`weights` file {path!r} is not a readable HDF5 weights file (truncated, or no "
            f"weights file at all): {error}"
        ) from error


def _is_own_h5(path):
    with _open_h5(path) as f:
        groups = list(f["layers"]) if "layers" in f else []
    return any(name.startswith(_OWN_H5_GROUPS) for name in groups)


def read_h5(path):
    """Every dataset of a Keras ``.weights.h5`` file: ``{"layers/conv2d/vars/0": array}``.

    Example:
        >>> keras_resnet.ResNet20().save_weights("r20.weights.h5")
        >>> sorted(read_h5("r20.weights.h5"))[0]
        'layers/batch_normalization/vars/0'
    """
    tensors = {}

    def visit(name, item):
        if hasattr(item, "shape"):
            tensors[name] = np.asarray(item)

    with _open_h5(path) as f:
        f.visititems(visit)
    return tensors


def read_safetensors(path):
    """A safetensors file as ``{name: array}`` (``safetensors.numpy``, no PyTorch).

    Example:
        >>> from safetensors.numpy import save_file
        >>> save_file({"fc.bias": np.zeros(1000, np.float32)}, "model.safetensors")
        >>> read_safetensors("model.safetensors")["fc.bias"].shape
        (1000,)
    """
    from safetensors.numpy import load_file

    try:
        return load_file(os.fspath(path))
    except Exception as error:  # SafetensorError, OSError, unsupported dtypes
        raise InvalidArgument(
            f"`weights` file {os.fspath(path)!r} is not a readable safetensors file (truncated, "
            f"or no weights file at all): {error}"
        ) from error


def read_npz(path):
    """A ``.npz`` of named arrays (``numpy.load(allow_pickle=False)``).

    Example:
        >>> np.savez("state_dict.npz", **{"conv1.weight": np.zeros((64, 3, 7, 7))})
        >>> read_npz("state_dict.npz")["conv1.weight"].shape
        (64, 3, 7, 7)
    """
    try:
        with np.load(os.fspath(path), allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except Exception as error:  # BadZipFile, object arrays, truncated members
        raise InvalidArgument(
            f"`weights` file {os.fspath(path)!r} is not a readable .npz of arrays (truncated, "
            f"pickled objects, or no weights file at all): {error}"
        ) from error


def read_torch(path):
    """A PyTorch state dict file (``torch.load(..., weights_only=True)``) as NumPy arrays.

    Example:
        >>> read_torch("resnet18-f37072fd.pth")["fc.weight"].shape  # doctest: +SKIP
        (1000, 512)
    """
    path = os.fspath(path)
    torch = _torch()
    if torch is None:
        raise ImportError(_no_torch_message(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError for anything but tensors, truncated zips
        raise InvalidArgument(
            f"`weights` file {path!r} was refused by torch.load(weights_only=True) (it holds "
            f"more than tensors, is truncated, or is no weights file): {error}"
        ) from error
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        found = list(state)[:5] if isinstance(state, Mapping) else type(state).__name__
        raise InvalidArgument(
            f"`weights` file {path!r} must hold a flat state dict (name -> tensor), as "
            f"torchvision's and timm's do; it holds {found}."
        )
    return {
        name: (t.float() if t.is_floating_point() else t).detach().cpu().numpy()
        for name, t in state.items()
    }


def read_keras_hub(path):
    """A keras-hub preset folder (model.weights.h5 + task.weights.h5) or one of its files,
    as ``{h5 path: array}``.

    Example:
        >>> tensors = read_keras_hub("resnet_50_imagenet")  # doctest: +SKIP
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        return read_h5(path)
    tensors = read_h5(os.path.join(path, KERAS_HUB_BACKBONE_FILE))
    head = os.path.join(path, KERAS_HUB_HEAD_FILE)
    if os.path.exists(head):
        tensors.update(read_h5(head))
    return tensors


def read(path):
    """The tensors of a weight file (or keras-hub preset folder) and their layout.

    Returns:
        ``(tensors, layout)``: ``{name: numpy array}`` and "torch" or "keras_hub".

    Example:
        >>> np.savez("resnet50.npz", **{"fc.bias": np.zeros(1000)})
        >>> read("resnet50.npz")[1]
        'torch'
    """
    found = kind(path)
    path = os.fspath(path)
    if found == "keras_hub":
        return read_keras_hub(path), "keras_hub"
    if found == "own":
        raise InvalidArgument(f"{path!r} is a keras_resnet weights file: use model.load_weights.")
    if path.endswith(".safetensors"):
        return read_safetensors(path), "torch"
    if path.endswith(".npz"):
        return read_npz(path), "torch"
    return read_torch(path), "torch"


def check_readable(weight_set):
    """Raise before any download if this machine cannot read ``weight_set``'s files.

    Example:
        >>> check_readable(keras_resnet.weights.get("resnet50", "timm_a1"))  # safetensors
    """
    if weight_set.file_format == "pth" and _torch() is None:
        raise ImportError(
            f"weights={weight_set.name!r} ({weight_set.checkpoint}) is a .pth file. "
            + _no_torch_message(weight_set.files[0].file_name)
        )


def cache_folder(cache_dir=None):
    """Where downloaded weights live: ``cache_dir`` (default ``$KERAS_HOME`` or
    ``~/.keras``) / ``keras_resnet``.

    Example:
        >>> cache_folder("/data/keras")
        '/data/keras/keras_resnet'
    """
    base = cache_dir or os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    return os.path.join(os.path.expanduser(base), CACHE_SUBDIR)


def file_hash(path, algorithm):
    """The hex digest of the file at ``path`` with ``algorithm`` ("sha256", "md5", ...), read in 1 MiB chunks.

    Example:
        >>> file_hash(__file__, "sha256") == file_hash(__file__, "sha256")
        True
    """
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _hash_problem(path, weight_file):
    """None if ``path`` matches the file's recorded hash, else what differs."""
    checks = [("sha256", weight_file.sha256, False), ("md5", weight_file.md5, False),
              ("sha256", weight_file.sha256_prefix, True)]
    for algorithm, expected, prefix in checks:
        if expected:
            got = file_hash(path, algorithm)
            if not (got.startswith(expected) if prefix else got == expected):
                return f"its {algorithm} is {got}, expected {expected}{'...' if prefix else ''}"
    return None


def _keras_file_hash(weight_file):
    """The hash ``keras.utils.get_file`` checks itself (full sha256 or md5; not a prefix)."""
    return weight_file.sha256 or weight_file.md5


def _unreachable(weight_file, folder, error):
    return (
        f"Could not download {weight_file.url} ({error}). Without network access, fetch that "
        f"URL elsewhere and save it as {os.path.join(folder, weight_file.file_name)} (file "
        f"{weight_file.file_name!r} in the cache folder {folder}; it is used from there), or "
        "pass weights=PATH to a local copy."
    )


def download(weight_file, cache_dir=None):
    """The local path of ``weight_file``: from the cache, else downloaded with
    ``keras.utils.get_file`` and its hash checked. A failed or mismatching download leaves
    no file behind (it is written to a temporary name and renamed when it checks out).

    Example:
        >>> download(get("resnet50", "timm_a1").files[0])  # doctest: +SKIP
        '/root/.keras/keras_resnet/timm_resnet50.a1_in1k.safetensors'
    """
    import keras

    from keras_resnet.saving import atomic_path

    folder = cache_folder(cache_dir)
    path = os.path.join(folder, weight_file.file_name)
    if os.path.exists(path):
        if _hash_problem(path, weight_file) is None:
            return path
        os.remove(path)  # as keras.utils.get_file does: a stale cached file is fetched again
    os.makedirs(folder, exist_ok=True)
    with atomic_path(path) as tmp:
        try:
            keras.utils.get_file(
                os.path.basename(tmp), weight_file.url, cache_dir=os.path.dirname(folder),
                cache_subdir=os.path.basename(folder), file_hash=_keras_file_hash(weight_file),
                force_download=True,
            )
        except ValueError as error:  # get_file's hash check
            raise InvalidArgument(
                f"Downloaded {weight_file.url}, but {error}; nothing was kept."
            ) from error
        except Exception as error:  # URL fetch failure, refused connection, HTTP error
            raise ConnectionError(_unreachable(weight_file, folder, error)) from error
        problem = _hash_problem(tmp, weight_file)
        if problem:
            raise InvalidArgument(
                f"Downloaded {weight_file.url}, but {problem}: the file is corrupt or changed "
                "upstream; nothing was kept."
            )
    return path


def head_state_dict(model, weights, what):
    """The torchvision state dict ``weights`` gives a head's ``model`` (``what``: "segmenter",
    "detector"): a dict as it is, a ``.safetensors``/``.npz``/``.pth`` file read; None after
    a ``.weights.h5`` of the model itself is loaded through ``model.load_weights``.

    Example:
        >>> head_state_dict(model, {"backbone.body.conv1.weight": kernel}, "detector")  # doctest: +SKIP
    """
    if isinstance(weights, dict):
        return weights
    if kind(weights) == "own":
        model.load_weights(weights)
        return None
    tensors, layout = read(weights)
    if layout != "torch":
        raise InvalidArgument(f"`weights` file {weights!r} holds a {layout!r} layout; a {what} "
                              "reads torchvision state dicts.")
    return tensors
