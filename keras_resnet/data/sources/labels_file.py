"""Labels files: a CSV of ``path,label;label;...[,split]`` rows as a multi-label source.

Paths are relative to the file's folder; an optional header row starts with ``path``; class
names are the sorted labels; a row without a split goes to train/validation/test (80/10/10)
by a hash of its path, as in image folders. A malformed row, a missing image or an image
listed twice is refused with its line number.
"""

import csv
import os

import numpy as np

from keras_resnet.data.sources.base import STANDARD_SPLITS
from keras_resnet.data.sources.files import files_source, hash_split, readable_images
from keras_resnet.data.sources.registry import register
from keras_resnet.errors import InvalidArgument

LABEL_SEPARATOR = ";"


def _labels_file_error(path, line, message):
    return InvalidArgument(f"`name`: labels file {path!r}, line {line}: {message}")


def _read_labels_file(path):
    """``[(line, image path, [labels], split or None)]`` of a labels file, checked row by row."""
    folder = os.path.dirname(path)
    rows, seen = [], {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            lines = list(enumerate(csv.reader(f), start=1))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InvalidArgument(f"`name`: labels file {path!r} cannot be read: {error}.") from None
    for line, cells in lines:
        if not cells or all(not c.strip() for c in cells):
            continue
        if line == lines[0][0] and cells[0].strip().lower() == "path":
            continue  # header
        if len(cells) not in (2, 3):
            raise _labels_file_error(
                path, line, f"expected path,label;label;...[,split]; got {len(cells)} fields."
            )
        image = cells[0].strip()
        if not image:
            raise _labels_file_error(path, line, "the image path is empty.")
        split = cells[2].strip() if len(cells) == 3 and cells[2].strip() else None
        if split is not None and split not in STANDARD_SPLITS:
            raise _labels_file_error(
                path, line, f"split {split!r} is not one of {', '.join(STANDARD_SPLITS)}."
            )
        labels = sorted({label.strip() for label in cells[1].split(LABEL_SEPARATOR)} - {""})
        full = os.path.normpath(os.path.join(folder, os.path.expanduser(image)))
        if full in seen:
            raise _labels_file_error(path, line, f"{image!r} is listed again (first on line {seen[full]}).")
        seen[full] = line
        rows.append((line, full, labels, split))
    if not rows:
        raise InvalidArgument(f"`name`: labels file {path!r} lists no images.")
    missing = [(line, image) for line, image, _, _ in rows if not os.path.isfile(image)]
    if missing:
        listing = "; ".join(f"line {line}: {image}" for line, image in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise InvalidArgument(
            f"`name`: {len(missing)} image(s) of labels file {path!r} do not exist: {listing}{more}."
        )
    return rows


def labels_file_source(path, *, skip_unreadable=False, **options):
    """The source of a labels file: multi-hot labels, the images checked as folders' are
    (``options`` of the registry: only ``skip_unreadable`` used).

    Example:
        >>> labels_file_source("photos/labels.csv").multilabel  # doctest: +SKIP
        True
    """
    if not os.path.isfile(os.path.expanduser(os.fspath(path))):
        raise InvalidArgument(f"`name`: labels file {os.fspath(path)!r} does not exist.")
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    rows = _read_labels_file(path)
    class_names = sorted({label for _, _, labels, _ in rows for label in labels})
    if not class_names:
        raise InvalidArgument(f"`name`: labels file {path!r} names no labels.")
    column = {name: k for k, name in enumerate(class_names)}
    multi_hot = np.zeros((len(rows), len(class_names)), np.uint8)
    for n, (_, _, labels, _) in enumerate(rows):
        multi_hot[n, [column[label] for label in labels]] = 1
    root = os.path.dirname(path)
    keep, native_side = readable_images(path, [(None, image) for _, image, _, _ in rows], skip_unreadable)
    by_split = {}
    for index in keep:
        _, image, _, split = rows[index]
        by_split.setdefault(split or hash_split(root, image), []).append(index)
    return files_source(
        path, "labels", [image for _, image, _, _ in rows], multi_hot, by_split, STANDARD_SPLITS,
        f"labels file {path!r} has no images (rows without a split column are split 80/10/10 "
        "by a hash of their path); give rows that split.",
        class_names=class_names, native_side=native_side, multilabel=True,
        one_label_each=bool(np.all(multi_hot.sum(axis=1) == 1)),
    )


def is_labels_file(name):
    """Whether dataset ``name`` names a labels file (``*.csv``; it need not exist yet)."""
    return isinstance(name, (str, os.PathLike)) and os.fspath(name).lower().endswith(".csv")


register("labels_file", labels_file_source, matches=is_labels_file,
         description="a labels file (*.csv)")
