"""The ``"folder"`` source: a directory ``root/<class_name>/*.{jpg,jpeg,png,bmp,gif}`` (class
names sorted). With ``root/train`` and ``root/test`` (and optionally ``root/validation``) those
are the splits; otherwise each file goes to ``"train"`` / ``"validation"`` / ``"test"``
(80/10/10) by a hash of its path relative to ``root``, so the split is stable across machines
and runs.
"""

import os

import numpy as np

from keras_resnet.data.sources.base import STANDARD_SPLITS
from keras_resnet.data.sources.files import (
    IMAGE_EXTENSIONS,
    files_source,
    hash_split,
    readable_images,
)
from keras_resnet.data.sources.registry import register
from keras_resnet.errors import InvalidArgument


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


def folder_source(root, *, skip_unreadable=False, **options):
    """The ``Source`` of the image folder ``root`` (``options`` of the registry: only
    ``skip_unreadable`` used: skip undecodable files with a warning instead of raising).

    Example:
        >>> folder_source("flowers").class_names  # doctest: +SKIP
        ['daisy', 'rose']
    """
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


def is_directory(name):
    """Whether dataset ``name`` is an existing directory (the folder source's names)."""
    return os.path.isdir(os.path.expanduser(os.fspath(name)))


register("folder", folder_source, matches=is_directory,
         description="a directory of class folders")
