"""Where images come from: each source gives uint8 ``(h, w, 3)`` images and int32 labels for
a split.

- ``"digits"``: scikit-learn's bundled 8x8 handwritten digits (1797 images, no network),
  scaled to 0..255 and repeated to 3 channels. Fixed stratified split (seed 0): ``"test"``
  20% (360), ``"validation"`` 10% of the rest (144), ``"train"`` the remaining 1293.
- any tensorflow-datasets image classification dataset by name; for CIFAR also the paper's
  45k/5k split (§4.2): ``"train45k"`` = ``"train[:45000]"``, ``"val5k"`` = ``"train[45000:]"``.
- a directory ``root/<class_name>/*.{jpg,jpeg,png,bmp,gif}`` (class names sorted). With
  ``root/train`` and ``root/test`` (and optionally ``root/validation``) those are the splits;
  otherwise each file goes to ``"train"`` / ``"validation"`` / ``"test"`` (80/10/10) by a
  hash of its path relative to ``root``, so the split is stable across machines and runs.
- a labels file ``*.csv`` of rows ``path,label;label;...[,split]`` (multi-label: any number
  of labels per image, none included): paths relative to the file's folder, class names the
  sorted labels, an optional header row starting with ``path``; a row's split is its third
  column (train, validation or test) or, without one, the hash split of folders.
- ``"digit_canvases"``: the offline multi-label dataset (``keras_resnet.data.canvases``).
"""

import concurrent.futures
import dataclasses
import hashlib
import os
import warnings

import numpy as np
import tensorflow as tf

from keras_resnet.data.images import to_rgb
from keras_resnet.extras import require
from keras_resnet.errors import InvalidArgument

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
STANDARD_SPLITS = ("train", "validation", "test")
# §4.2: "45k/5k train/val split" of CIFAR-10's 50k training images.
SPLIT_ALIASES = {"train45k": "train[:45000]", "val5k": "train[45000:]"}
SPLIT_ALIAS_DATASETS = ("cifar10", "cifar100")
DIGITS_SPLIT_SEED = 0
FOLDER_SPLIT_PERCENT = {"train": 80, "validation": 10, "test": 10}



@dataclasses.dataclass
class Source:
    """Where a dataset's examples come from; ``make(split)`` gives ``(dataset, count)`` of
    ``(encoded, label)``: int32 labels, or multi-hot uint8 rows when ``multilabel``."""

    name: str
    class_names: list
    native_side: object  # largest image side, None if unknown
    from_files: bool  # read from record files (auto-shard by file), else in-memory / paths
    mean_key: str  # names the training split's contents, for the mean cache
    make: object  # split -> (dataset of (encoded, label), num_examples or None)
    decode: object  # encoded -> uint8 (h, w, 3)
    train_split: str = "train"
    flip: bool = True
    multilabel: bool = False  # labels are multi-hot rows (several labels per image)
    one_label_each: bool = True  # every image has exactly one label (so single-label works)
    cache_mean: bool = True  # cache the mean image in a file (False: quick to recompute)


def split_error(split, name, available):
    """The error for a split that ``name`` lacks, listing the ones it has."""
    return InvalidArgument(
        f"`split` {split!r} does not exist for dataset {name!r}; available: "
        f"{', '.join(map(repr, available))}."
    )


# Digits -------------------------------------------------------------------------------------

_DIGITS_CACHE = {}


def digits_arrays():
    """All 1797 digits as uint8 (8, 8, 1) images (0..16 scaled to 0..255), labels and split indices.

    Example:
        >>> images, labels, splits = digits_arrays()
        >>> images.shape, images.dtype.name, len(labels)
        ((1797, 8, 8, 1), 'uint8', 1797)
    """
    if "arrays" not in _DIGITS_CACHE:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
        labels = digits.target.astype(np.int32)
        indices = np.arange(len(labels))
        rest, test = train_test_split(
            indices, test_size=0.2, stratify=labels, random_state=DIGITS_SPLIT_SEED
        )
        train, validation = train_test_split(
            rest, test_size=0.1, stratify=labels[rest], random_state=DIGITS_SPLIT_SEED
        )
        splits = {"train": np.sort(train), "validation": np.sort(validation), "test": np.sort(test)}
        _DIGITS_CACHE["arrays"] = (images, labels, splits)
    return _DIGITS_CACHE["arrays"]


def _digits_source():
    images, labels, splits = digits_arrays()

    def make(split):
        if split not in splits:
            raise split_error(split, "digits", STANDARD_SPLITS)
        index = splits[split]
        return tf.data.Dataset.from_tensor_slices((images[index], labels[index])), len(index)

    return Source(
        name="digits",
        class_names=[str(i) for i in range(10)],
        native_side=8,
        from_files=False,
        mean_key="digits",
        make=make,
        decode=to_rgb,
        flip=False,  # a mirrored digit is another digit (or none)
        cache_mean=False,  # a fraction of a second: no file
    )


# tensorflow-datasets ------------------------------------------------------------------------


def decode_encoded(encoded):
    """Encoded JPEG/PNG/GIF/BMP bytes -> uint8 ``(h, w, 3)`` (the first frame of a GIF)."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def _tfds_builder(name, data_dir):
    """The tfds builder of ``name``, or a ValueError; needs no network for unknown names."""
    tfds = require("tensorflow_datasets", f"Dataset {name!r} (a tensorflow-datasets name)")

    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError:
        import difflib

        known = tfds.list_builders(with_community_datasets=False)
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise InvalidArgument(
            f"`name` {name!r} is neither 'digits', an existing directory, nor a "
            "tensorflow-datasets dataset (list those with "
            f"`tensorflow_datasets.list_builders()`).{hint}"
        ) from None


def tfds_split(name, split, available=()):
    """The tfds split string :func:`load` reads for ``split`` of tfds dataset ``name``.

    ``"train45k"`` -> ``"train[:45000]"`` and ``"val5k"`` -> ``"train[45000:]"`` (the paper's
    CIFAR split, §4.2, for cifar10 and cifar100); ``"train"``, ``"validation"``, ``"test"``
    must be among ``available`` (when known); anything else passes through to tfds.

    Example:
        >>> tfds_split("cifar10", "val5k")
        'train[45000:]'
    """
    base_name = name.split("/")[0].split(":")[0]
    if split in SPLIT_ALIASES:
        if base_name not in SPLIT_ALIAS_DATASETS:
            raise InvalidArgument(
                f"`split` {split!r} (the paper's 45k/5k CIFAR split) is defined for "
                f"{', '.join(SPLIT_ALIAS_DATASETS)}; got dataset {name!r}. Use a tfds slice "
                "such as 'train[:90%]' instead."
            )
        return SPLIT_ALIASES[split]
    available = list(available)
    if available and split in STANDARD_SPLITS and split not in available:
        aliases = list(SPLIT_ALIASES) if base_name in SPLIT_ALIAS_DATASETS else []
        raise split_error(split, name, available + aliases)
    return split


def _tfds_source(name, builder, download, manual_dir, training, seed):
    import tensorflow_datasets as tfds

    if download:
        download_config = tfds.download.DownloadConfig(manual_dir=manual_dir)
        builder.download_and_prepare(download_config=download_config)
    info = builder.info
    keys = info.supervised_keys
    features = info.features
    if (
        not keys
        or len(keys) != 2
        or not isinstance(features[keys[0]], tfds.features.Image)
        or not isinstance(features[keys[1]], tfds.features.ClassLabel)
    ):
        raise InvalidArgument(
            f"`name` {name!r} is not an image classification dataset (its supervised keys "
            f"are {keys!r}; an Image and a ClassLabel feature are needed)."
        )
    image_key, label_key = keys
    available = list(info.splits.keys())
    shape = features[image_key].shape
    native_side = max(shape[:2]) if None not in shape[:2] else None

    def make(split):
        tfds_name = tfds_split(name, split, available)
        try:
            dataset = builder.as_dataset(
                split=tfds_name,
                as_supervised=True,
                shuffle_files=training,
                decoders={image_key: tfds.decode.SkipDecoding()},
                read_config=tfds.ReadConfig(shuffle_seed=seed, try_autocache=False),
            )
        except AssertionError as error:  # tfds asserts the data exists
            raise InvalidArgument(
                f"Dataset {name!r} is not prepared in data_dir {builder.data_dir!r}; pass "
                f"`download=True` (or `manual_dir` for manually downloaded data). ({error})"
            ) from None
        cardinality = int(dataset.cardinality())
        return dataset, (cardinality if cardinality >= 0 else None)

    return Source(
        name=name,
        class_names=list(features[label_key].names),
        native_side=native_side,
        from_files=True,
        mean_key=f"tfds_{info.full_name.replace('/', '_')}",
        make=make,
        decode=decode_encoded,
        train_split="train" if not available or "train" in available else available[0],
    )


# Image folders ------------------------------------------------------------------------------

_TF_FORMATS = ("JPEG", "PNG", "GIF", "BMP")
_CHECKED = {}  # (path, mtime_ns, bytes) -> (error or None, (width, height))


def _check_image(path):
    """Decode ``path`` once with PIL (JPEGs at 1/8 scale: every byte read, little work)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.format not in _TF_FORMATS:
                return f"format {image.format} is not one of {', '.join(_TF_FORMATS)}", None
            size = image.size
            if image.format == "JPEG":
                image.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            image.load()
            return None, size
    except Exception as error:  # PIL raises many kinds; all mean "cannot decode"
        return f"{type(error).__name__}: {error}", None


def _check_images(paths):
    keys = []
    for path in paths:
        stat = os.stat(path)
        keys.append((path, stat.st_mtime_ns, stat.st_size))
    todo = [key for key in keys if key not in _CHECKED]
    if todo:
        workers = min(32, 2 * (os.cpu_count() or 1))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            for key, result in zip(todo, pool.map(_check_image, [k[0] for k in todo])):
                _CHECKED[key] = result
    return [_CHECKED[key] for key in keys]


def _image_files(folder):
    files = []
    for directory, subdirectories, names in os.walk(folder):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        files += [
            os.path.join(directory, n)
            for n in sorted(names)
            if not n.startswith(".") and n.lower().endswith(IMAGE_EXTENSIONS)
        ]
    return files


def _class_folders(root):
    if not os.path.isdir(root):
        raise InvalidArgument(f"`name`: directory {root!r} does not exist.")
    classes = sorted(
        entry.name
        for entry in os.scandir(root)
        if entry.is_dir() and not entry.name.startswith(".")
    )
    if not classes:
        raise InvalidArgument(
            f"`name`: directory {root!r} has no class subfolders; expected "
            "root/<class_name>/<image files>."
        )
    return classes


def _split_roots(root):
    """``(class_names, {split: folder})``: root/train, root/test (and root/validation) when
    both of the first exist, else everything under root as one pool to split by hash."""
    if all(os.path.isdir(os.path.join(root, s)) for s in ("train", "test")):
        folders = {s: os.path.join(root, s) for s in STANDARD_SPLITS
                   if os.path.isdir(os.path.join(root, s))}
        return _class_folders(os.path.join(root, "train")), folders
    return _class_folders(root), {"all": root}


def _folder_files(root, class_names, split_roots):
    """``[(split or "all", path)]`` and labels of every image file, class folders checked."""
    files, labels = [], []
    for split_name, split_root in split_roots.items():
        unknown = sorted(set(_class_folders(split_root)) - set(class_names))
        if unknown:
            raise InvalidArgument(
                f"`name`: {split_root!r} has class folders {unknown} that are not in "
                f"{os.path.join(root, 'train')!r}; every split needs the training classes."
            )
        for label, class_name in enumerate(class_names):
            folder = os.path.join(split_root, class_name)
            if not os.path.isdir(folder):
                continue
            found = _image_files(folder)
            if not found:
                raise InvalidArgument(
                    f"`name`: class folder {folder!r} has no images "
                    f"({', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder."
                )
            files += [(split_name, path) for path in found]
            labels += [label] * len(found)
    return files, labels


def readable_images(root, files, skip_unreadable):
    """Indices of the decodable files and the largest image side; the others raise (or are
    skipped with a warning)."""
    results = _check_images([path for _, path in files])
    bad = [(path, error) for (_, path), (error, _) in zip(files, results) if error]
    if bad:
        listing = "; ".join(f"{path} ({error})" for path, error in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        message = (
            f"{len(bad)} of {len(files)} image files under {root!r} cannot be decoded: "
            f"{listing}{more}."
        )
        if not skip_unreadable:
            raise InvalidArgument(
                f"`name`: {message} Fix or remove them, or pass `skip_unreadable=True`."
            )
        warnings.warn(f"Skipping unreadable images: {message}", stacklevel=4)
    keep = [i for i, (error, _) in enumerate(results) if not error]
    return keep, max((max(results[i][1]) for i in keep), default=None)


def hash_split(root, path):
    """"train", "validation" or "test" (80/10/10) by a hash of the path under root: stable
    across machines and runs."""
    relative = os.path.relpath(path, root).replace(os.sep, "/")
    bucket = int(hashlib.sha1(relative.encode("utf-8")).hexdigest()[:8], 16) % 100
    if bucket < FOLDER_SPLIT_PERCENT["train"]:
        return "train"
    if bucket < FOLDER_SPLIT_PERCENT["train"] + FOLDER_SPLIT_PERCENT["validation"]:
        return "validation"
    return "test"


def fingerprint(paths):
    """Names the training files' contents (path, mtime, size), for the mean image cache."""
    digest = hashlib.sha1()
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}|{stat.st_mtime_ns}|{stat.st_size}|".encode())
    return digest.hexdigest()[:16]


def _folder_source(root, skip_unreadable):
    root = os.path.abspath(os.path.expanduser(os.fspath(root)))
    class_names, split_roots = _split_roots(root)
    files, labels = _folder_files(root, class_names, split_roots)
    keep, native_side = readable_images(root, files, skip_unreadable)
    by_split = {}
    for index in keep:
        split_name, path = files[index]
        split_name = hash_split(root, path) if split_name == "all" else split_name
        by_split.setdefault(split_name, []).append(index)
    available = [s for s in STANDARD_SPLITS if "all" in split_roots or s in split_roots]
    return files_source(
        root, "folder", [path for _, path in files], np.asarray(labels, np.int32), by_split, available,
        f"directory {root!r} has no images (files are split 80/10/10 by a hash of their path); "
        "add images, or make root/train and root/test folders.",
        class_names=class_names, native_side=native_side,
    )


def files_source(name, kind, paths, labels, by_split, available, empty, **fields):
    """The :class:`Source` of image files of a ``kind`` ("folder", "labels"): ``paths`` and
    ``labels`` (rows indexed alike), the indices of each split, the splits there may be, and
    what to say of an empty split."""

    def make(split):
        if split not in available:
            raise split_error(split, name, available)
        chosen = by_split.get(split, [])
        if not chosen:
            raise InvalidArgument(f"`split` {split!r} of {empty}")
        return (tf.data.Dataset.from_tensor_slices(([paths[i] for i in chosen], labels[chosen])),
                len(chosen))

    return Source(
        name=name,
        from_files=False,
        mean_key=f"{kind}_{fingerprint([paths[i] for i in by_split.get('train', [])])}",
        make=make,
        decode=lambda path: decode_encoded(tf.io.read_file(path)),
        **fields,
    )


def _looks_like_path(name):
    """Paths, not tfds names ("imagenette/160px" has a slash too, but no existing parent)."""
    if not isinstance(name, str):
        return True
    if os.path.isabs(name) or name.startswith((".", "~")):
        return True
    parent = os.path.dirname(name.rstrip(os.sep))
    return bool(parent) and os.path.isdir(parent)


def get_source(name, *, data_dir, download, manual_dir, training, seed, skip_unreadable):
    if name == "digits":
        return _digits_source()
    if name == "digit_canvases":
        from keras_resnet.data.canvases import canvas_source  # it reads the digits from here

        return canvas_source()
    if isinstance(name, (str, os.PathLike)) and os.fspath(name).lower().endswith(".csv"):
        if not os.path.isfile(os.path.expanduser(os.fspath(name))):
            raise InvalidArgument(f"`name`: labels file {os.fspath(name)!r} does not exist.")
        from keras_resnet.data.labels_file import labels_file_source  # it reads images as here

        return labels_file_source(name, skip_unreadable)
    if os.path.isdir(os.path.expanduser(os.fspath(name))):
        return _folder_source(name, skip_unreadable)
    if _looks_like_path(name):
        raise InvalidArgument(
            f"`name` {os.fspath(name)!r} is neither 'digits', a tfds dataset, nor an existing "
            f"directory (no directory at {os.path.abspath(os.path.expanduser(name))!r})."
        )
    builder = _tfds_builder(name, data_dir)
    return _tfds_source(name, builder, download, manual_dir, training, seed)
