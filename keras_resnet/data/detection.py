"""The detection ``tf.data`` pipeline: batches of images with their boxes padded to one count,
from a source whose labels are boxes (``"digit_boxes"``, a COCO JSON file, a CSV of boxes);
``keras_resnet.data.load`` hands such sources here.

A batch is ``(images, {"boxes": float32 (B, M, 4), "classes": int32 (B, M)})`` with ``M =
max_boxes``. Images leave as the segmentation pipeline gives them to a model that carries its
``ImagePreprocessing``: float32 ``(B, S, S, C)`` normalised by ``info.preprocessing``. Boxes are
``x1, y1, x2, y2`` in pixels of that input (scaled with the image); rows past an image's boxes
are padding: box 0 and class -1. An image with more than ``max_boxes`` boxes is refused when
the pipeline is made (its source knows the most boxes of any image); nothing is dropped.

- Training (``augment="auto"``): :func:`keras_resnet.data.augment.boxes.train_example`,
  the image scaled to fit ``S`` times a factor uniform in ``scale_range`` (torchvision's
  ``ScaleJitter``), flipped (not for digits), a random ``S x S`` window with the boxes whose
  centres it holds, clipped (boxes under 1 pixel dropped). The default ``scale_range=(1.0,
  1.0)`` leaves the flip alone: the RetinaNet paper's augmentation.
- Evaluation (and ``augment=None``): each image resized, keeping its aspect ratio, to fit
  ``S`` and padded at the bottom and right, as the segmentation pipeline's evaluation, its
  boxes scaled alike, every box kept. These batches (not the training transform's) carry
  two more targets to map predictions back:
  ``"scale"`` float32 ``(B, 2)`` ``(scale_x, scale_y)`` (input pixels per original pixel) and
  ``"image_size"`` int32 ``(B, 2)`` the original ``(height, width)``; :func:`original_boxes`.

The preprocessing (when none is given) is the segmentation pipeline's: input size
``image_size`` (default: the images' largest side up to 64, else 512, a multiple of
RetinaNet's largest stride, 128), resize "direct", the training images' per-channel mean for
small images and the ImageNet mean for larger ones; no std. The class names are the K classes
of the boxes (no background).
"""

import dataclasses
import zlib

import numpy as np
import tensorflow as tf

from keras_resnet.data.augment.boxes import fit_and_pad, train_example
from keras_resnet.data.holdout import Holdout, pairs_with_holdout
from keras_resnet.data.images import normalize, to_model_channels
from keras_resnet.data.info import DatasetInfo
from keras_resnet.data.segmentation import (
    SMALL_SIDE,
    prefetched,
    segmentation_preprocessing,
    sharded,
)
from keras_resnet.data.sources import get_source, lookup
from keras_resnet.errors import InvalidArgument, InvalidType, check_positive_int
from keras_resnet.preprocessing import ImagePreprocessing

AUTOTUNE = tf.data.AUTOTUNE
DETECTION_AUGMENTATIONS = ("auto", None)
MAX_BOXES = 100  # torchvision keeps 300 detections per image; 100 targets suit training
LARGE_SIDE = 512  # larger images' default input: a multiple of RetinaNet's stride 128 (P7)
PADDING_CLASS = -1
# The training scale's default range: 1 (no jitter), the flip alone, as torchvision's detection
# reference trains RetinaNet (its "hflip" policy) and the RetinaNet paper (§5.1: horizontal
# flipping only). (0.5, 2.0) is torchvision's large scale jitter.
SCALE_RANGE = (1.0, 1.0)
# The registered sources whose examples are images with boxes.
BOX_SOURCES = ("digit_boxes", "coco_json", "box_csv")


@dataclasses.dataclass(frozen=True, eq=False)
class DetectionInfo(DatasetInfo):
    """:class:`DatasetInfo` of detection batches.

    Attributes (beyond ``DatasetInfo``'s):
        max_boxes: M, the box rows of every image in a batch.
        scale_range: the training scale's range, in multiples of the fitted size.

    Example:
        >>> DetectionInfo("digit_boxes", "test", 500, ImagePreprocessing(64)).task_kind
        'detection'
    """

    max_boxes: int = MAX_BOXES
    scale_range: tuple = SCALE_RANGE

    @property
    def task_kind(self):
        return "detection"

    def to_config(self):
        config = super().to_config()
        config["scale_range"] = list(self.scale_range)
        return config


def has_boxes(name):
    """Whether dataset ``name`` is detection data (boxes), read from the source that takes it.

    Example:
        >>> has_boxes("digit_boxes"), has_boxes("digit_scenes")
        (True, False)
    """
    try:
        return lookup(name).name in BOX_SOURCES
    except InvalidArgument:
        return False


def _check_options(source, batch_size, training, augment, image_size, scale_range, max_boxes,
                   seed, preprocessing, unsupported):
    if not getattr(source, "boxes", False):
        raise InvalidArgument(f"`name` {str(source.name)!r} has no boxes: it is not detection "
                              "data.")
    check_positive_int("batch_size", batch_size)
    check_positive_int("max_boxes", max_boxes)
    if max_boxes < source.most_boxes:
        raise InvalidArgument(
            f"`max_boxes` {max_boxes} is less than the {source.most_boxes} boxes of an image of "
            f"{str(source.name)!r}; pass max_boxes >= {source.most_boxes} (no box is dropped).")
    if not isinstance(training, bool):
        raise InvalidArgument(f"`training` must be None, True or False; got {training!r}.")
    if augment not in DETECTION_AUGMENTATIONS:
        raise InvalidArgument(f"`augment` for detection data must be 'auto' (scale, flip, crop) "
                              f"or None; got {augment!r}.")
    if image_size is not None:
        check_positive_int("image_size", image_size)
    if (not isinstance(scale_range, (tuple, list)) or len(scale_range) != 2
            or not 0 < scale_range[0] <= scale_range[1]):
        raise InvalidArgument(f"`scale_range` must be (low, high) with 0 < low <= high; got "
                              f"{scale_range!r}.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InvalidArgument(f"`seed` must be None or an int; got {seed!r}.")
    if preprocessing is not None and not isinstance(preprocessing, ImagePreprocessing):
        raise InvalidType("`preprocessing` must be None or an ImagePreprocessing; got "
                          f"{type(preprocessing).__name__}.")
    if (preprocessing is not None and image_size is not None
            and (image_size, image_size) != tuple(preprocessing.image_size)):
        raise InvalidArgument(f"`image_size` {image_size} differs from the preprocessing's "
                              f"{preprocessing.image_size}; pass one of them.")
    for argument, (value, allowed) in unsupported.items():
        if value != allowed:
            raise InvalidArgument(f"`{argument}` {value!r} does not go with detection data "
                                  f"({str(source.name)!r} has boxes); leave it {allowed!r}.")


def detection_preprocessing(source, image_size=None, data_dir=None):
    """The preprocessing of detection data without a given one (see the module's notes).

    Example:
        >>> detection_preprocessing(get_source("digit_boxes")).image_size
        (64, 64)
    """
    small = source.native_side is not None and source.native_side <= SMALL_SIDE
    return segmentation_preprocessing(source, image_size or (None if small else LARGE_SIDE),
                                      data_dir)


def load_source(source, split, batch_size, training=None, *, data_dir=None, image_size=None,
                scale_range=SCALE_RANGE, max_boxes=MAX_BOXES, augment="auto",
                preprocessing=None, seed=None, deterministic=False, cache=True,
                shuffle_buffer=10_000, input_context=None, drop_remainder=None, holdout=None,
                unsupported=None):
    """Detection batches of a box ``source`` (a ``BoxSource``): what :func:`load_detection`
    and ``keras_resnet.data.load`` return for it.

    Args: as :func:`load_detection`'s; ``unsupported``: ``{argument: (value, allowed)}`` of
    the classification options ``load`` was given (each must be what it allows).

    Returns:
        ``(dataset, info)``: a :class:`DetectionInfo`.

    Example:
        >>> load_source(get_source("digit_boxes"), "test", 8)[1].num_examples
        500
    """
    training = split == "train" if training is None else training
    _check_options(source, batch_size, training, augment, image_size, scale_range, max_boxes,
                   seed, preprocessing, unsupported or {})
    if holdout is not None:
        if not isinstance(holdout, Holdout):
            raise InvalidType(f"`holdout` must be None or a Holdout; got {type(holdout).__name__}.")
        source = pairs_with_holdout(source, holdout)
    if preprocessing is None:
        preprocessing = detection_preprocessing(source, image_size, data_dir)
    elif preprocessing.class_names != source.class_names:
        preprocessing = preprocessing.with_class_names(source.class_names)
    dataset, num_examples = source.make(split)
    info = DetectionInfo(
        name=source.name, split=split, num_examples=num_examples, preprocessing=preprocessing,
        augmentation="detection" if augment else None, padding=0,
        horizontal_flip=source.flip, max_boxes=max_boxes, scale_range=tuple(scale_range))
    small = source.native_side is not None and source.native_side <= SMALL_SIDE
    dataset = _pipeline(dataset, source, info, batch_size, training, seed, cache and small,
                        shuffle_buffer, input_context,
                        training if drop_remainder is None else drop_remainder, deterministic)
    return dataset, info


def _pipeline(dataset, source, info, batch_size, training, seed, cache, shuffle_buffer,
              input_context, drop_remainder, deterministic):
    """Shard, decode, cache, shuffle, transform, normalise, pad, batch and prefetch."""
    dataset, batch_size, pipeline_id = sharded(dataset, batch_size, input_context)
    preprocessing = info.preprocessing

    def decode(encoded, targets):
        image = to_model_channels(source.decode(encoded), preprocessing)
        return image, {"boxes": tf.reshape(tf.cast(targets["boxes"], tf.float32), (-1, 4)),
                       "classes": tf.cast(targets["classes"], tf.int32)}

    dataset = dataset.map(decode, num_parallel_calls=AUTOTUNE, deterministic=True)
    if cache:
        dataset = dataset.cache()
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = _transformed(dataset, info, training, seed, pipeline_id)
    dataset = dataset.map(lambda image, targets: (normalize(image, preprocessing), targets),
                          num_parallel_calls=AUTOTUNE)
    dataset = _padded_batches(dataset, info, batch_size, drop_remainder)
    return prefetched(dataset, training, deterministic, input_context)


def _transformed(dataset, info, training, seed, pipeline_id):
    """Training examples through :func:`train_example`; the others fitted and padded (with
    their scale and original size)."""
    size = info.preprocessing.image_size
    if not (training and info.augmentation):
        def fit(image, targets):
            image, boxes, scale, original = fit_and_pad(image, targets["boxes"], size)
            return image, {"boxes": boxes, "classes": targets["classes"], "scale": scale,
                           "image_size": original}

        return dataset.map(fit, num_parallel_calls=AUTOTUNE)
    if seed is not None:
        seed = zlib.crc32(f"{seed}/detection/{pipeline_id}".encode()) & 0x7FFFFFFF
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def transform(example, example_seed):
        image, targets = example
        image, boxes, classes = train_example(
            image, targets["boxes"], targets["classes"], example_seed, size=size,
            scale_range=info.scale_range, flip=info.horizontal_flip)
        return image, {"boxes": boxes, "classes": classes}

    return tf.data.Dataset.zip(dataset, seeds).map(transform, num_parallel_calls=AUTOTUNE)


def _padded_batches(dataset, info, batch_size, drop_remainder):
    """Batches with every image's boxes padded to ``info.max_boxes`` rows (box 0, class -1)."""
    image_spec, target_spec = dataset.element_spec
    rows = info.max_boxes
    shapes = {"boxes": [rows, 4], "classes": [rows], "scale": [2], "image_size": [2]}
    values = {"boxes": 0.0, "classes": PADDING_CLASS, "scale": 0.0, "image_size": 0}
    return dataset.padded_batch(
        batch_size, drop_remainder=drop_remainder,
        padded_shapes=(image_spec.shape, {key: shapes[key] for key in target_spec}),
        padding_values=(0.0, {key: tf.constant(values[key], target_spec[key].dtype)
                              for key in target_spec}))


def original_boxes(boxes, scale, image_size):
    """Boxes in pixels of an evaluation batch's input mapped back to their original images,
    clipped to them.

    Args:
        boxes: ``(B, N, 4)`` ``x1, y1, x2, y2`` in the batch's input pixels (a model's
            detections, or the targets' ``"boxes"``).
        scale: the targets' ``"scale"``, ``(B, 2)`` ``(scale_x, scale_y)``.
        image_size: the targets' ``"image_size"``, ``(B, 2)`` ``(height, width)``.

    Returns:
        float32 ``(B, N, 4)`` boxes in pixels of the original images.

    Example:
        >>> original_boxes([[[0, 0, 32, 16]]], [[0.8, 0.8]], [[20, 40]]).tolist()
        [[[0.0, 0.0, 40.0, 20.0]]]
    """
    boxes = np.asarray(boxes, np.float32)
    scale = np.asarray(scale, np.float32)
    height, width = np.asarray(image_size, np.float32).T
    originals = boxes / np.tile(scale, 2)[:, None, :]
    limits = np.stack([width, height, width, height], axis=-1)[:, None, :]
    return np.clip(originals, 0.0, limits)


def load_detection(name="digit_boxes", split="train", batch_size=32, training=None, *,
                   data_dir=None, image_size=None, scale_range=SCALE_RANGE, max_boxes=MAX_BOXES,
                   augment="auto", preprocessing=None, seed=None, deterministic=False,
                   cache=True, shuffle_buffer=10_000, input_context=None, drop_remainder=None,
                   holdout=None, skip_unreadable=False):
    """Batches of ``(images, {"boxes", "classes"})`` of detection data, and their
    :class:`DetectionInfo`.

    Args:
        name: "digit_boxes", a COCO JSON file or a CSV of boxes
            (``keras_resnet.data.sources.boxes``).
        split: "train", "validation" or "test".
        batch_size: global batch size (per replica with ``input_context``).
        training: shuffle and augment; defaults to ``split == "train"``.
        data_dir: where the mean image is cached.
        image_size: the model's input side S.
        scale_range: the training scale, in multiples of the size that fits S; default
            (1.0, 1.0), the flip alone; (0.5, 2.0) is torchvision's large scale jitter.
        max_boxes: M, box rows per image (an image with more raises); default 100.
        augment: "auto" (scale, flip, crop) or None.
        preprocessing: a model's ``ImagePreprocessing`` to follow (its input size and
            normalisation; the class names are the data's).
        seed: seeds the shuffle and the stateless transforms: the same seed, the same batches.
        deterministic: keep element order deterministic (evaluation always is).
        cache: cache decoded small images (side <= 64) before the random transforms.
        shuffle_buffer: shuffle buffer size (training only).
        input_context: a ``tf.distribute.InputContext``: read one shard.
        drop_remainder: drop the last partial batch; defaults to ``training``.
        holdout: a ``Holdout``: "validation" is that share of the training images.
        skip_unreadable: skip undecodable images (with a warning) instead of raising.

    Returns:
        ``(dataset, info)``: images float32 ``(B,) + info.image_shape`` normalised by
        ``info.preprocessing``; targets ``{"boxes": float32 (B, M, 4), "classes": int32 (B,
        M)}`` (padding: box 0, class -1), and when not training ``"scale"`` and
        ``"image_size"`` (see the module's notes).

    Example:
        >>> train, info = load_detection("digit_boxes", "train", 32, seed=0)
        >>> info.num_examples, info.num_classes
        (2000, 10)
    """
    training = split == "train" if training is None else training
    source = get_source(name, data_dir=data_dir, download=False, manual_dir=None,
                        training=training, seed=seed, skip_unreadable=skip_unreadable)
    return load_source(
        source, split, batch_size, training, data_dir=data_dir, image_size=image_size,
        scale_range=scale_range, max_boxes=max_boxes, augment=augment,
        preprocessing=preprocessing, seed=seed, deterministic=deterministic, cache=cache,
        shuffle_buffer=shuffle_buffer, input_context=input_context,
        drop_remainder=drop_remainder, holdout=holdout)
