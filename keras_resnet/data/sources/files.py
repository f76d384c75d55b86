"""What the file-backed sources (image folders, labels files) share: every image checked once
(decodable, its size), the stable hash split of files without one, the fingerprint of the
training files for the mean image cache, and the ``Source`` of a list of image files.
"""

import concurrent.futures
import hashlib
import os
import warnings

import tensorflow as tf

from keras_resnet.data.sources.base import MissingSplit, Source, decode_encoded, split_error
from keras_resnet.errors import InvalidArgument

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
FOLDER_SPLIT_PERCENT = {"train": 80, "validation": 10, "test": 10}
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


def check_images(paths):
    """``(error or None, (width, height) or None)`` of each path, each file decoded once per
    content (path, mtime, size) per process."""
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


def readable_images(root, files, skip_unreadable):
    """Indices of the decodable files and the largest image side; the others raise (or are
    skipped with a warning)."""
    results = check_images([path for _, path in files])
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


def files_source(name, kind, paths, labels, by_split, available, empty, **fields):
    """The :class:`Source` of image files of a ``kind`` ("folder", "labels"): ``paths`` and
    ``labels`` (rows indexed alike), the indices of each split, the splits there may be, and
    what to say of an empty split."""

    def make(split):
        if split not in available:
            raise split_error(split, name, available)
        chosen = by_split.get(split, [])
        if not chosen:
            raise MissingSplit(f"`split` {split!r} of {empty}")
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

