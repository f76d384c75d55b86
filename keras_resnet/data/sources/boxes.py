"""Boxes as labels (detection data): the :class:`BoxSource` every detection source gives, and
readers of two box files, each also a source of ``keras_resnet.data.load``.

An example is an image and its targets ``{"boxes": float32 (n, 4), "classes": int32 (n,)}``:
boxes ``x1, y1, x2, y2`` in pixels of the image (torchvision's format, ``0 <= x1 < x2 <= w``),
classes ``0..K-1`` (no background class: RetinaNet's classifier is a sigmoid per class); ``n``
may be 0.

- COCO's JSON (:func:`read_coco_json`, a ``*.json`` name): ``images``, ``annotations`` and
  ``categories``. A ``bbox`` ``[x, y, w, h]`` becomes ``x, y, x + w, y + h``, clipped to the
  image; a box empty after clipping is dropped (counted in ``dropped``), as torchvision's COCO
  reference does. Category ids map to ``0..K-1`` in sorted id order (names and original ids
  kept). ``iscrowd`` annotations are kept apart (``crowd_boxes``): they are not trained on
  (COCO's evaluation ignores detections on them). Images without annotations have ``n = 0``.
  Image files: ``file_name`` under ``image_dir``; as a dataset name, ``image_dir`` is the
  JSON's folder, or COCO's layout ``<root>/annotations/instances_<set>.json`` with the images
  in ``<root>/<set>/``.
- a CSV of boxes (:func:`read_box_csv`, a ``*.csv`` name whose rows have six fields): rows
  ``image_path,x1,y1,x2,y2,class_name`` (paths relative to the file, an optional header row
  starting ``image_path``), one box a row; ``image_path,,,,,`` lists an image with no boxes.
  Class names sorted -> indices. Boxes must lie inside their image with ``x1 < x2, y1 < y2``.

A file is one data set: its images go to ``"train"`` / ``"validation"`` / ``"test"``
(80/10/10) by a hash of their path, as image folders without split folders do. A malformed
file raises a one-line error naming the file and the annotation id or line.
"""

import csv
import dataclasses
import json
import math
import os

import numpy as np
import tensorflow as tf

from keras_resnet.data.sources.base import (
    STANDARD_SPLITS,
    MissingSplit,
    Source,
    decode_encoded,
    split_error,
)
from keras_resnet.data.sources.files import check_images, fingerprint, hash_split, readable_images
from keras_resnet.data.sources.registry import register
from keras_resnet.errors import InvalidArgument, MissingFile

CSV_FIELDS = ("image_path", "x1", "y1", "x2", "y2", "class_name")


@dataclasses.dataclass
class BoxSource(Source):
    """A :class:`Source` whose labels are boxes: ``make(split)`` gives ``(encoded, {"boxes":
    float32 (n, 4), "classes": int32 (n,)})`` examples.

    Attributes (beyond ``Source``'s):
        boxes: True: the labels are boxes (what the data pipelines route by).
        most_boxes: the most boxes of any image (a batch's ``max_boxes`` must hold them).
    """

    boxes: bool = True
    most_boxes: int = 0


@dataclasses.dataclass(frozen=True)
class BoxRecords:
    """Images and their boxes, as read from a box file.

    Attributes:
        path: the file read.
        images: each image's absolute path.
        sizes: each image's ``(height, width)``.
        boxes: per image float32 ``(n, 4)`` ``x1, y1, x2, y2`` in pixels.
        classes: per image int32 ``(n,)`` in ``0..K-1``.
        class_names: the K class names.
        category_ids: COCO's category id of each class (None for a CSV).
        image_ids: COCO's id of each image (None for a CSV).
        crowd_boxes, crowd_classes: COCO's ``iscrowd`` annotations per image, not trained on.
        dropped: COCO boxes dropped as empty once clipped to their image.
    """

    path: str
    images: list
    sizes: list
    boxes: list
    classes: list
    class_names: list
    category_ids: list = None
    image_ids: list = None
    crowd_boxes: list = None
    crowd_classes: list = None
    dropped: int = 0

    @property
    def most_boxes(self):
        return max((len(c) for c in self.classes), default=0)


def ragged_targets(boxes, classes):
    """``{"boxes", "classes"}`` ragged tensors of per-image arrays (a dataset's slices).

    Example:
        >>> ragged_targets([np.zeros((2, 4)), np.zeros((0, 4))], [[1, 2], []])["classes"].shape
        TensorShape([2, None])
    """
    lengths = [len(c) for c in classes]
    flat_boxes = np.concatenate([np.reshape(b, (-1, 4)) for b in boxes] + [np.zeros((0, 4))])
    flat_classes = np.concatenate([np.asarray(c, np.int32) for c in classes] + [np.zeros(0)])
    return {
        "boxes": tf.RaggedTensor.from_row_lengths(flat_boxes.astype(np.float32), lengths),
        "classes": tf.RaggedTensor.from_row_lengths(flat_classes.astype(np.int32), lengths),
    }


def _file_error(kind, path, where, message):
    return InvalidArgument(f"{kind} {path!r}, {where}: {message}")


# COCO's JSON ----------------------------------------------------------------------------------


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            found = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidArgument(f"COCO file {path!r} cannot be read as JSON: {error}.") from None
    missing = [key for key in ("images", "annotations", "categories")
               if not isinstance(found, dict) or not isinstance(found.get(key), list)]
    if missing:
        raise InvalidArgument(f"COCO file {path!r} has no list {', '.join(map(repr, missing))}; "
                              "a COCO file has lists 'images', 'annotations' and 'categories'.")
    return found


def _by_id(path, entries, what, fields):
    """``{id: entry}`` of COCO ``entries``, each with ``fields``, no id twice."""
    found = {}
    for entry in entries:
        absent = [f for f in ("id", *fields) if not isinstance(entry, dict) or f not in entry]
        if absent:
            where = f"{what} {entry.get('id')!r}" if isinstance(entry, dict) else what
            raise _file_error("COCO file", path, where, f"lacks {', '.join(absent)}.")
        if entry["id"] in found:
            raise _file_error("COCO file", path, f"{what} {entry['id']!r}", "its id is repeated.")
        found[entry["id"]] = entry
    return found


def _coco_box(path, annotation, size):
    """An annotation's ``bbox`` as ``x1, y1, x2, y2`` clipped to ``size`` = (height, width)."""
    box = annotation["bbox"]
    if (not isinstance(box, list) or len(box) != 4 or
            not all(isinstance(v, (int, float)) and math.isfinite(v) for v in box)):
        raise _file_error("COCO file", path, f"annotation {annotation['id']!r}",
                          f"bbox must be [x, y, width, height] of 4 numbers; got {box!r}.")
    x, y, width, height = box
    if width < 0 or height < 0:
        raise _file_error("COCO file", path, f"annotation {annotation['id']!r}",
                          f"bbox {box!r} has a negative width or height.")
    return (min(max(x, 0), size[1]), min(max(y, 0), size[0]),
            min(max(x + width, 0), size[1]), min(max(y + height, 0), size[0]))


def _coco_images(path, images, image_dir):
    """``(ids, paths, sizes)`` of COCO's images, each file checked to exist."""
    ids, paths, sizes = list(images), [], []
    for image_id in ids:
        image = images[image_id]
        full = os.path.normpath(os.path.join(image_dir, image["file_name"]))
        if not os.path.isfile(full):
            raise _file_error("COCO file", path, f"image {image_id!r}",
                              f"file {full!r} does not exist.")
        paths.append(full)
        sizes.append((image["height"], image["width"]))
    return ids, paths, sizes


def read_coco_json(path, image_dir=None):
    """The images and boxes of a COCO JSON file (see the module's notes).

    Args:
        path: the JSON file.
        image_dir: the folder ``file_name`` is relative to; default the file's folder.

    Returns:
        A :class:`BoxRecords` with ``category_ids``, ``image_ids`` and the crowd boxes.

    Example:
        >>> read_coco_json("instances_val2017.json", "val2017").class_names[0]  # doctest: +SKIP
        'person'
    """
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    found = _read_json(path)
    image_dir = os.path.dirname(path) if image_dir is None else os.fspath(image_dir)
    categories = _by_id(path, found["categories"], "category", ("name",))
    category_ids = sorted(categories)
    index = {category: k for k, category in enumerate(category_ids)}
    images = _by_id(path, found["images"], "image", ("file_name", "width", "height"))
    ids, paths, sizes = _coco_images(path, images, image_dir)
    row = {image_id: n for n, image_id in enumerate(ids)}
    kept = [[[], []] for _ in ids]
    crowd = [[[], []] for _ in ids]
    dropped = 0
    for annotation in _by_id(path, found["annotations"], "annotation",
                             ("image_id", "category_id", "bbox")).values():
        where = f"annotation {annotation['id']!r}"
        if annotation["image_id"] not in row:
            raise _file_error("COCO file", path, where,
                              f"image_id {annotation['image_id']!r} is not in `images`.")
        if annotation["category_id"] not in index:
            raise _file_error("COCO file", path, where,
                              f"category_id {annotation['category_id']!r} is not in "
                              f"`categories` (ids: {', '.join(map(str, category_ids))}).")
        n = row[annotation["image_id"]]
        box = _coco_box(path, annotation, sizes[n])
        if not (box[2] > box[0] and box[3] > box[1]):
            dropped += 1
            continue
        target = crowd[n] if annotation.get("iscrowd", 0) else kept[n]
        target[0].append(box)
        target[1].append(index[annotation["category_id"]])
    arrays = [[(np.reshape(np.array(b, np.float32), (-1, 4)), np.array(c, np.int32))
               for b, c in pairs] for pairs in (kept, crowd)]
    return BoxRecords(
        path=path, images=paths, sizes=sizes, boxes=[b for b, _ in arrays[0]],
        classes=[c for _, c in arrays[0]],
        class_names=[str(categories[c]["name"]) for c in category_ids],
        category_ids=category_ids, image_ids=ids, crowd_boxes=[b for b, _ in arrays[1]],
        crowd_classes=[c for _, c in arrays[1]], dropped=dropped)


# A CSV of boxes -------------------------------------------------------------------------------


def _csv_lines(path):
    """``[(line, cells)]`` of the file's non-blank rows, less a header."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            lines = [(n, cells) for n, cells in enumerate(csv.reader(f), start=1)
                     if cells and any(c.strip() for c in cells)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InvalidArgument(f"Box CSV {path!r} cannot be read: {error}.") from None
    if lines and lines[0][1][0].strip().lower() == CSV_FIELDS[0]:
        lines = lines[1:]
    if not lines:
        raise InvalidArgument(f"Box CSV {path!r} lists no images.")
    return lines


def _csv_box(path, line, cells):
    """``(box or None, class name or None)`` of a row's last five fields."""
    fields = [c.strip() for c in cells[1:]]
    if not any(fields):
        return None, None
    if not all(fields):
        raise _file_error("Box CSV", path, f"line {line}", "give all of x1,y1,x2,y2,class_name "
                          "or none of them (an image with no boxes).")
    try:
        box = tuple(float(v) for v in fields[:4])
    except ValueError:
        raise _file_error("Box CSV", path, f"line {line}",
                          f"x1,y1,x2,y2 must be numbers; got {','.join(fields[:4])!r}.") from None
    if not (all(map(math.isfinite, box)) and 0 <= box[0] < box[2] and 0 <= box[1] < box[3]):
        raise _file_error("Box CSV", path, f"line {line}",
                          f"the box must have 0 <= x1 < x2 and 0 <= y1 < y2; got {box}.")
    return box, fields[4]


def _csv_rows(path):
    """``{image: [(line, box or None, class name)]}`` in the order images first appear."""
    folder, images = os.path.dirname(path), {}
    for line, cells in _csv_lines(path):
        if len(cells) != len(CSV_FIELDS):
            raise _file_error("Box CSV", path, f"line {line}",
                              f"expected {','.join(CSV_FIELDS)}; got {len(cells)} fields.")
        if not cells[0].strip():
            raise _file_error("Box CSV", path, f"line {line}", "the image path is empty.")
        image = os.path.normpath(os.path.join(folder, os.path.expanduser(cells[0].strip())))
        if not os.path.isfile(image):
            raise _file_error("Box CSV", path, f"line {line}", f"{image!r} does not exist.")
        images.setdefault(image, []).append((line, *_csv_box(path, line, cells)))
    for rows in images.values():
        empty = [line for line, box, _ in rows if box is None]
        if empty and len(rows) > 1:
            raise _file_error("Box CSV", path, f"line {empty[0]}",
                              f"lists its image without boxes, but line "
                              f"{[n for n, b, _ in rows if b is not None][0]} gives it a box.")
    return images


def _inside(path, rows, size):
    for line, box, _ in rows:
        if box is not None and (box[2] > size[1] or box[3] > size[0]):
            raise _file_error("Box CSV", path, f"line {line}", f"box {box} leaves its "
                              f"{size[1]}x{size[0]} (width x height) image.")


def read_box_csv(path, skip_unreadable=False):
    """The images and boxes of a CSV of ``image_path,x1,y1,x2,y2,class_name`` rows.

    Args:
        path: the CSV file (image paths relative to its folder).
        skip_unreadable: skip undecodable images (with a warning) instead of raising.

    Returns:
        A :class:`BoxRecords` (class names sorted; no COCO ids, no crowd boxes).

    Example:
        >>> read_box_csv("photos/boxes.csv").class_names  # doctest: +SKIP
        ['cat', 'dog']
    """
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    rows = _csv_rows(path)
    names = sorted({name for found in rows.values() for _, box, name in found if box})
    index = {name: k for k, name in enumerate(names)}
    keep, _ = readable_images(path, [(None, image) for image in rows], skip_unreadable)
    images = [list(rows)[i] for i in keep]
    sizes = [(height, width) for _, (width, height) in check_images(images)]
    for image, size in zip(images, sizes):
        _inside(path, rows[image], size)
    boxes = [np.array([b for _, b, _ in rows[i] if b], np.float32).reshape(-1, 4) for i in images]
    classes = [np.array([index[n] for _, b, n in rows[i] if b], np.int32) for i in images]
    return BoxRecords(path=path, images=images, sizes=sizes, boxes=boxes, classes=classes,
                      class_names=names)


# As sources -----------------------------------------------------------------------------------


def records_source(records, root, kind):
    """The :class:`BoxSource` of ``records``, split 80/10/10 by a hash of each image's path
    under ``root``; ``kind`` names it in the mean image cache.

    Example:
        >>> records_source(read_box_csv("boxes.csv"), ".", "box_csv")  # doctest: +SKIP
    """
    by_split = {}
    for n, image in enumerate(records.images):
        by_split.setdefault(hash_split(root, image), []).append(n)
    targets = ragged_targets(records.boxes, records.classes)

    def make(split):
        if split not in STANDARD_SPLITS:
            raise split_error(split, records.path, STANDARD_SPLITS)
        if not by_split.get(split):
            raise MissingSplit(f"`split` {split!r} of box file {records.path!r} has no images "
                               "(a box file's images are split 80/10/10 by a hash of their path).")
        chosen = by_split[split]
        dataset = tf.data.Dataset.from_tensor_slices((
            [records.images[n] for n in chosen],
            {key: tf.gather(value, chosen) for key, value in targets.items()}))
        # a map: each image's rows as plain tensors (not ragged ones of rank 0)
        return dataset.map(lambda path, found: (path, found)), len(chosen)

    return BoxSource(
        name=records.path, class_names=list(records.class_names),
        native_side=max((max(size) for size in records.sizes), default=None), from_files=False,
        mean_key=f"{kind}_{fingerprint([records.images[n] for n in by_split.get('train', [])])}",
        make=make, decode=lambda path: decode_encoded(tf.io.read_file(path)),
        one_label_each=False, most_boxes=records.most_boxes)



def _coco_image_dir(path):
    """COCO's layout: ``<root>/annotations/instances_<set>.json`` -> ``<root>/<set>``."""
    folder, stem = os.path.split(os.path.splitext(path)[0])
    if os.path.basename(folder) == "annotations" and stem.startswith("instances_"):
        images = os.path.join(os.path.dirname(folder), stem[len("instances_"):])
        if os.path.isdir(images):
            return images
    return folder


def coco_json_source(path, *, skip_unreadable=False, **options):
    """The source of a COCO JSON file (``options`` of the registry: only ``skip_unreadable``).

    Example:
        >>> coco_json_source("annotations/instances_val2017.json").boxes  # doctest: +SKIP
        True
    """
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.isfile(path):
        raise MissingFile(f"`name`: COCO file {path!r} does not exist.")
    image_dir = _coco_image_dir(path)
    records = read_coco_json(path, image_dir)
    keep, _ = readable_images(path, [(None, image) for image in records.images], skip_unreadable)
    found = check_images([records.images[n] for n in keep])
    for n, (_, (width, height)) in zip(keep, found):
        if (height, width) != tuple(records.sizes[n]):
            raise _file_error("COCO file", path, f"image {records.image_ids[n]!r}",
                              f"says {records.sizes[n][1]}x{records.sizes[n][0]} (width x "
                              f"height); {records.images[n]!r} is {width}x{height}.")
    if len(keep) < len(records.images):
        records = dataclasses.replace(records, **{
            key: [getattr(records, key)[n] for n in keep] for key in
            ("images", "sizes", "boxes", "classes", "image_ids", "crowd_boxes", "crowd_classes")})
    return records_source(records, image_dir, "coco")


def box_csv_source(path, *, skip_unreadable=False, **options):
    """The source of a CSV of boxes (``options`` of the registry: only ``skip_unreadable``).

    Example:
        >>> box_csv_source("photos/boxes.csv").most_boxes  # doctest: +SKIP
        3
    """
    records = read_box_csv(path, skip_unreadable)
    return records_source(records, os.path.dirname(records.path), "box_csv")


def is_coco_json(name):
    """Whether dataset ``name`` names a JSON file (``*.json``; it need not exist yet).

    Example:
        >>> is_coco_json("annotations/instances_val2017.json")
        True
    """
    return isinstance(name, (str, os.PathLike)) and os.fspath(name).lower().endswith(".json")


def is_box_csv(name):
    """Whether dataset ``name`` is an existing ``*.csv`` whose first row (after a header) has
    the six fields of a box CSV (a labels file has two or three).

    Example:
        >>> is_box_csv("missing.csv")
        False
    """
    if not (isinstance(name, (str, os.PathLike)) and os.fspath(name).lower().endswith(".csv")):
        return False
    path = os.path.expanduser(os.fspath(name))
    if not os.path.isfile(path):
        return False
    try:
        return len(_csv_lines(path)[0][1]) == len(CSV_FIELDS)
    except InvalidArgument:
        return False


register("coco_json", coco_json_source, matches=is_coco_json,
         description="a COCO JSON file of boxes (*.json)")
register("box_csv", box_csv_source, matches=is_box_csv,
         description="a CSV of boxes (*.csv, six fields a row)")

