"""The ``"mask_folders"`` source: images with a segmentation mask each, in one of two layouts.

- ``root/{train,validation,test}/{images,masks}/``: each image (JPEG/PNG/BMP/GIF) has its mask
  at ``masks/<image stem>.png``. ``root/train`` is needed; a split without its folder is
  missing (:class:`MissingSplit`, so a validation split can be held out of training).
- Pascal VOC: ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` and
  ``ImageSets/Segmentation/{train,val}.txt`` (one id a line) for "train" and "validation"
  (VOC's test masks are not public: "test" is missing).

A mask is a palette PNG (the palette indices are the classes, as VOC's; read as indices, never
as colours) or a greyscale PNG of class ids, the image's size; 255 is "ignore" (VOC's object
borders). Class names: ``root/classes.txt`` (one a line) when present, else VOC's 21 for the
VOC layout, else ``class_0`` .. up to the largest id in the masks. A mask value that is not a
class and not 255 raises, naming the file and the value; so does an image without a mask.
Every mask is read once when the source is made (cached per file content in the process).
"""

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
from keras_resnet.data.sources.files import (
    IMAGE_EXTENSIONS,
    check_images,
    fingerprint,
    readable_images,
)
from keras_resnet.data.sources.registry import register
from keras_resnet.errors import InvalidArgument, MissingFile

IGNORE_LABEL = 255
CLASSES_FILE = "classes.txt"
MASK_MODES = ("P", "L")  # palette indices, or grey levels as class ids
VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
]
VOC_FOLDERS = ("JPEGImages", "SegmentationClass", os.path.join("ImageSets", "Segmentation"))
VOC_SPLIT_FILES = {"train": "train.txt", "validation": "val.txt"}
_MASKS_READ = {}  # (path, mtime_ns, bytes) -> (sorted values present, (width, height))


def read_mask(path):
    """The class ids of mask file ``path``: uint8 ``(h, w)``, the palette indices of a palette
    PNG or the grey levels of a greyscale one (never colours).

    Example:
        >>> read_mask("root/train/masks/cat.png").shape  # doctest: +SKIP
        (375, 500)
    """
    from PIL import Image

    path = os.fsdecode(path.item() if isinstance(path, np.ndarray) else path)
    with Image.open(path) as mask:
        if mask.mode not in MASK_MODES:
            raise InvalidArgument(
                f"Mask file {path!r} has mode {mask.mode!r}; a mask must be a palette PNG "
                "('P': the indices are the classes) or a greyscale PNG ('L') of class ids."
            )
        return np.array(mask, np.uint8)


def _mask_summary(path):
    stat = os.stat(path)
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in _MASKS_READ:
        mask = read_mask(path)
        _MASKS_READ[key] = (np.unique(mask), (mask.shape[1], mask.shape[0]))
    return _MASKS_READ[key]


def _mask_path(image, masks_folder):
    mask = os.path.join(masks_folder, os.path.splitext(os.path.basename(image))[0] + ".png")
    if not os.path.isfile(mask):
        raise MissingFile(f"Image {image!r} has no mask: expected {mask!r}.")
    return mask


def _paired_layout(root):
    """``{split: [(image, mask)]}`` of ``root/<split>/{images,masks}``."""
    pairs = {}
    for split in STANDARD_SPLITS:
        images = os.path.join(root, split, "images")
        if not os.path.isdir(images):
            continue
        names = sorted(n for n in os.listdir(images)
                       if not n.startswith(".") and n.lower().endswith(IMAGE_EXTENSIONS))
        masks = os.path.join(root, split, "masks")
        pairs[split] = [(os.path.join(images, n), _mask_path(os.path.join(images, n), masks))
                        for n in names]
    return pairs


def _voc_layout(root):
    """``{split: [(image, mask)]}`` of the ids listed in ``ImageSets/Segmentation``."""
    images, masks, lists = (os.path.join(root, folder) for folder in VOC_FOLDERS)
    pairs = {}
    for split, list_name in VOC_SPLIT_FILES.items():
        list_path = os.path.join(lists, list_name)
        if not os.path.isfile(list_path):
            continue
        with open(list_path, encoding="utf-8") as lines:
            ids = [line.split()[0] for line in lines if line.strip()]
        pairs[split] = []
        for image_id in ids:
            image = os.path.join(images, f"{image_id}.jpg")
            if not os.path.isfile(image):
                raise MissingFile(f"{list_path!r} lists {image_id!r}, but {image!r} does not exist.")
            pairs[split].append((image, _mask_path(image, masks)))
    return pairs


def is_voc(root):
    """Whether ``root`` has the Pascal VOC segmentation folders."""
    return all(os.path.isdir(os.path.join(root, folder)) for folder in VOC_FOLDERS)


def is_mask_root(name):
    """Whether dataset ``name`` is a directory in one of the two mask layouts.

    Example:
        >>> is_mask_root("/nonexistent")
        False
    """
    root = os.path.expanduser(os.fspath(name))
    return is_voc(root) or any(
        os.path.isdir(os.path.join(root, split, "images"))
        and os.path.isdir(os.path.join(root, split, "masks")) for split in STANDARD_SPLITS)


def _given_class_names(root, voc):
    path = os.path.join(root, CLASSES_FILE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as lines:
            names = [line.strip() for line in lines if line.strip()]
        if not names or len(names) > IGNORE_LABEL:
            raise InvalidArgument(f"{path!r} must name 1 to {IGNORE_LABEL} classes, one a line; "
                                  f"it names {len(names)}.")
        return names
    return list(VOC_CLASSES) if voc else None


def _checked_masks(pairs, image_sizes, class_names):
    """The class names (given, or ``class_0`` .. the largest id): every mask read, its size
    and values checked."""
    largest = 0
    for (image, mask), image_size in zip(pairs, image_sizes):
        values, size = _mask_summary(mask)
        if size != image_size:
            raise InvalidArgument(f"Mask {mask!r} is {size[0]}x{size[1]} (width x height); "
                                  f"its image {image!r} is {image_size[0]}x{image_size[1]}.")
        labels = values[values != IGNORE_LABEL]
        if class_names is not None and labels.size and labels[-1] >= len(class_names):
            raise InvalidArgument(
                f"Mask {mask!r} has value {int(labels[-1])}; allowed: 0..{len(class_names) - 1} "
                f"(the {len(class_names)} classes) and {IGNORE_LABEL} (ignore).")
        largest = max(largest, int(labels[-1]) if labels.size else 0)
    return class_names or [f"class_{i}" for i in range(largest + 1)]


def _readable_pairs(root, pairs, skip_unreadable):
    """``(pairs kept per split, largest image side, image sizes of the kept)``."""
    flat = [(split, image, mask) for split, found in pairs.items() for image, mask in found]
    keep, native_side = readable_images(root, [(s, image) for s, image, _ in flat], skip_unreadable)
    kept = [flat[i] for i in keep]
    sizes = [size for _, size in check_images([image for _, image, _ in kept])]
    by_split = {}
    for split, image, mask in kept:
        by_split.setdefault(split, []).append((image, mask))
    return by_split, native_side, sizes


def mask_folder_source(root, *, skip_unreadable=False, **options):
    """The ``Source`` of the mask folders at ``root`` (``options`` of the registry: only
    ``skip_unreadable`` used: skip undecodable images with a warning instead of raising).

    Example:
        >>> mask_folder_source("VOC2012").class_names[:2]  # doctest: +SKIP
        ['background', 'aeroplane']
    """
    root = os.path.abspath(os.path.expanduser(os.fspath(root)))
    voc = is_voc(root)
    pairs = _voc_layout(root) if voc else _paired_layout(root)
    if "train" not in pairs:
        where = "ImageSets/Segmentation/train.txt" if voc else "train/images and train/masks"
        raise InvalidArgument(f"`name`: {root!r} has no training split; expected {where}.")
    by_split, native_side, sizes = _readable_pairs(root, pairs, skip_unreadable)
    flat = [pair for split in by_split for pair in by_split[split]]
    class_names = _checked_masks(flat, sizes, _given_class_names(root, voc))

    def make(split):
        if split not in pairs:
            raise split_error(split, root, list(pairs))
        chosen = by_split.get(split, [])
        if not chosen:
            raise MissingSplit(f"`split` {split!r} of mask folders {root!r} has no images.")
        images, masks = zip(*chosen)
        return tf.data.Dataset.from_tensor_slices((list(images), list(masks))), len(chosen)

    return Source(
        name=root, class_names=class_names, native_side=native_side, from_files=False,
        mean_key=f"masks_{fingerprint([image for image, _ in by_split.get('train', [])])}",
        make=make, decode=lambda path: decode_encoded(tf.io.read_file(path)),
        masks=True, decode_mask=decode_mask_file,
    )


def decode_mask_file(path):
    """A mask file's class ids as a uint8 ``(h, w)`` tensor (:func:`read_mask`, in ``tf.data``).

    Example:
        >>> decode_mask_file(tf.constant("root/train/masks/cat.png")).dtype  # doctest: +SKIP
        tf.uint8
    """
    mask = tf.numpy_function(read_mask, [path], tf.uint8, stateful=False)
    mask.set_shape([None, None])
    return mask


register("mask_folders", mask_folder_source, matches=is_mask_root,
         description="a directory of images and masks")
