"""Where images come from: every source gives uint8 ``(h, w, 3)`` images and int32 labels (or
multi-hot rows) for a split, behind one registry (:mod:`.registry`).

- ``"digits"`` (:mod:`.digits`): scikit-learn's bundled 8x8 digits, offline.
- ``"digit_canvases"`` (:mod:`.canvases`): the offline multi-label dataset, canvases of two or
  three digits each.
- ``"digit_scenes"`` (:mod:`.digit_scenes`): the offline segmentation dataset, scenes of digits
  with a class per pixel.
- a labels file ``*.csv`` (:mod:`.labels_file`) of rows ``path,label;label;...[,split]``.
- a directory of images and masks (:mod:`.masks`): ``root/<split>/{images,masks}`` or VOC's.
- a directory of class folders (:mod:`.folders`).
- any tensorflow-datasets image classification dataset by name (:mod:`.tfds`).

Layers: :mod:`.base` (the ``Source`` record) and :mod:`.registry` at the bottom, :mod:`.files`
(what file-backed sources share) above them, the sources on top; each source registers itself
when this package is imported, exact names first, then the kinds in the order below (a
``.csv`` name is a labels file before it is anything else; a directory of images and masks is
mask folders before class folders; tfds takes what is left).
"""

from keras_resnet.data.sources.base import (
    STANDARD_SPLITS,
    MissingSplit,
    Source,
    decode_encoded,
    split_error,
)
from keras_resnet.data.sources.registry import (
    allowed,
    get_source,
    lookup,
    register,
    registered,
    unknown_dataset,
    unregister,
)
from keras_resnet.data.sources.files import (
    FOLDER_SPLIT_PERCENT,
    IMAGE_EXTENSIONS,
    check_images,
    files_source,
    fingerprint,
    hash_split,
    readable_images,
)
from keras_resnet.data.sources.digits import DIGITS_SPLIT_SEED, digits_arrays, digits_source
from keras_resnet.data.sources.canvases import CANVAS_COUNTS, canvas_source, digit_canvases
from keras_resnet.data.sources.digit_scenes import (
    SCENE_CLASSES,
    SCENE_COUNTS,
    digit_scenes,
    scene_source,
)
from keras_resnet.data.sources.digit_boxes import BOX_COUNTS, digit_boxes  # noqa: F401
from keras_resnet.data.sources.labels_file import LABEL_SEPARATOR, labels_file_source
from keras_resnet.data.sources.masks import (
    IGNORE_LABEL,
    VOC_CLASSES,
    mask_folder_source,
    read_mask,
)
from keras_resnet.data.sources.folders import folder_source
from keras_resnet.data.sources.tfds import (
    SPLIT_ALIAS_DATASETS,
    SPLIT_ALIASES,
    tfds_source,
    tfds_split,
)

__all__ = [
    "CANVAS_COUNTS", "DIGITS_SPLIT_SEED", "FOLDER_SPLIT_PERCENT", "IGNORE_LABEL",
    "IMAGE_EXTENSIONS", "LABEL_SEPARATOR", "MissingSplit", "SCENE_CLASSES", "SCENE_COUNTS",
    "SPLIT_ALIASES", "SPLIT_ALIAS_DATASETS", "STANDARD_SPLITS", "Source", "VOC_CLASSES", "allowed",
    "canvas_source", "check_images", "decode_encoded", "digit_canvases", "digit_scenes",
    "digits_arrays", "digits_source", "files_source", "fingerprint", "folder_source", "get_source",
    "hash_split", "labels_file_source", "lookup", "mask_folder_source", "read_mask",
    "readable_images", "register", "registered", "scene_source", "split_error", "tfds_source",
    "tfds_split", "unknown_dataset", "unregister",
]
