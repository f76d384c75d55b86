"""The segmentation ``tf.data`` pipeline: batches of ``(images, masks)`` from a source whose
labels are masks (``"digit_scenes"``, mask folders); ``keras_resnet.data.load`` hands such
sources here.

Images leave as the classification pipeline gives them to a model that carries its
``ImagePreprocessing``: float32 ``(batch, h, w, channels)`` at the model's input size,
normalised by ``info.preprocessing``. Masks leave int32 ``(batch, h, w)``, 255 where a pixel is
ignored (VOC's borders, and padding).

- Training (``augment="auto"``): torchvision's segmentation training transform
  (:mod:`keras_resnet.data.augment.dense`): shorter side random in [0.5, 2.0] x ``base_size``,
  flip (not for digits), random crop of the model's input size, padding 0 / 255.
- Evaluation (and ``augment=None``): each image and mask resized, keeping the aspect ratio,
  to fit the model's input size with one side equal to it, then padded at the bottom and right
  (image 0, mask 255): batches of one size, every labelled pixel kept (at that resolution),
  none cropped away. A square image of the input size is unchanged.

The preprocessing (when none is given): input size ``image_size`` (default: the images'
largest side up to 64, else torchvision's 480 crop), resize policy "direct", the per-channel
mean of the training images for small images (side <= 64: the paper's mean subtraction, per
channel since crops move pixels) and the ImageNet mean for larger ones; no std.
``base_size`` defaults to the input size's larger side.
"""

import dataclasses
import zlib

import tensorflow as tf

from keras_resnet.data.augment.dense import SCALE_RANGE, fit_and_pad, scale_sides, train_pair
from keras_resnet.data.holdout import Holdout, pairs_with_holdout
from keras_resnet.data.images import normalize, to_model_channels
from keras_resnet.data.info import DatasetInfo
from keras_resnet.data.means import mean_image
from keras_resnet.data.sources import IGNORE_LABEL, get_source, lookup
from keras_resnet.errors import InvalidArgument, InvalidType, check_positive_int
from keras_resnet.preprocessing import IMAGENET_MEAN, ImagePreprocessing

AUTOTUNE = tf.data.AUTOTUNE
SEGMENTATION_AUGMENTATIONS = ("auto", None)
SMALL_SIDE = 64  # images up to this side: their own size and mean, cached decoded
LARGE_CROP = 480  # torchvision's references/segmentation crop (base size 520)


@dataclasses.dataclass(frozen=True, eq=False)
class SegmentationInfo(DatasetInfo):
    """:class:`DatasetInfo` of segmentation batches, with the training geometry.

    Attributes (beyond ``DatasetInfo``'s):
        base_size: the length the random shorter side is a multiple of (training).
        scale_range: the random shorter side's range in multiples of ``base_size``.
        ignore_label: the mask value that marks a pixel without a label (255).

    Example:
        >>> load_segmentation("digit_scenes", "test", 8)[1].task_kind
        'segmentation'
    """

    base_size: int = None
    scale_range: tuple = SCALE_RANGE
    ignore_label: int = IGNORE_LABEL

    @property
    def task_kind(self):
        return "segmentation"

    def to_config(self):
        config = super().to_config()
        config["scale_range"] = list(self.scale_range)
        return config


def _check_options(source, batch_size, training, augment, image_size, base_size, seed,
                   preprocessing, unsupported):
    if not source.masks:
        raise InvalidArgument(f"`name` {str(source.name)!r} has no masks: it is not "
                              "segmentation data.")
    check_positive_int("batch_size", batch_size)
    if not isinstance(training, bool):
        raise InvalidArgument(f"`training` must be None, True or False; got {training!r}.")
    if augment not in SEGMENTATION_AUGMENTATIONS:
        raise InvalidArgument(f"`augment` for segmentation data must be 'auto' (torchvision's "
                              f"segmentation transforms) or None; got {augment!r}.")
    for argument, value in (("image_size", image_size), ("base_size", base_size)):
        if value is not None:
            check_positive_int(argument, value)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InvalidArgument(f"`seed` must be None or an int; got {seed!r}.")
    if preprocessing is not None and not isinstance(preprocessing, ImagePreprocessing):
        raise InvalidType("`preprocessing` must be None or an ImagePreprocessing; got "
                          f"{type(preprocessing).__name__}.")
    for argument, (value, allowed) in unsupported.items():
        if value != allowed:
            raise InvalidArgument(f"`{argument}` {value!r} does not go with segmentation data "
                                  f"({str(source.name)!r} has masks); leave it {allowed!r}.")


# The registered sources whose examples are images with masks.
MASK_SOURCES = ("digit_scenes", "mask_folders")


def has_masks(name):
    """Whether dataset ``name`` is segmentation data (a class per pixel), read from the source
    that takes it without reading the data.

    Example:
        >>> has_masks("digit_scenes"), has_masks("digits")
        (True, False)
    """
    try:
        return lookup(name).name in MASK_SOURCES
    except InvalidArgument:
        return False


def segmentation_preprocessing(source, image_size=None, data_dir=None):
    """The preprocessing of segmentation data without a given one (see the module's notes).

    Example:
        >>> segmentation_preprocessing(get_source("digit_scenes")).image_size
        (64, 64)
    """
    small = source.native_side is not None and source.native_side <= SMALL_SIDE
    size = image_size or (source.native_side if small else LARGE_CROP)
    mean = mean_image(source, size, data_dir).mean(axis=(0, 1)) if small else IMAGENET_MEAN
    return ImagePreprocessing((size, size), "direct", mean=mean,
                              class_names=source.class_names, source=str(source.name))


def load_source(source, split, batch_size, training=None, *, data_dir=None, image_size=None,
                base_size=None, scale_range=SCALE_RANGE, augment="auto", preprocessing=None,
                seed=None, deterministic=False, cache=True, shuffle_buffer=10_000,
                input_context=None, drop_remainder=None, holdout=None, unsupported=None):
    """Segmentation batches of a mask ``source`` (a ``Source`` with ``masks``): what
    :func:`load_segmentation` and ``keras_resnet.data.load`` return for it.

    Args: as :func:`load_segmentation`'s; ``unsupported``: ``{argument: (value, allowed)}`` of
    the classification options ``load`` was given (each must be what it allows).

    Returns:
        ``(dataset, info)``: a :class:`SegmentationInfo`.

    Example:
        >>> load_source(get_source("digit_scenes"), "test", 8)[1].num_examples
        500
    """
    training = split == "train" if training is None else training
    _check_options(source, batch_size, training, augment, image_size, base_size, seed,
                   preprocessing, unsupported or {})
    if holdout is not None:
        if not isinstance(holdout, Holdout):
            raise InvalidType(f"`holdout` must be None or a Holdout; got {type(holdout).__name__}.")
        source = pairs_with_holdout(source, holdout)
    if preprocessing is None:
        preprocessing = segmentation_preprocessing(source, image_size, data_dir)
    elif preprocessing.class_names != source.class_names:
        preprocessing = preprocessing.with_class_names(source.class_names)
    base_size = base_size or max(preprocessing.image_size)
    dataset, num_examples = source.make(split)
    info = SegmentationInfo(
        name=source.name, split=split, num_examples=num_examples, preprocessing=preprocessing,
        augmentation="segmentation" if augment else None, padding=0,
        train_sides=scale_sides(base_size, scale_range), horizontal_flip=source.flip,
        base_size=base_size, scale_range=tuple(scale_range),
    )
    small = source.native_side is not None and source.native_side <= SMALL_SIDE
    dataset = _pipeline(dataset, source, info, batch_size, training, seed,
                        cache and small, shuffle_buffer, input_context,
                        training if drop_remainder is None else drop_remainder, deterministic)
    return dataset, info


def sharded(dataset, batch_size, input_context):
    """``(dataset, batch size, pipeline id)`` of this input pipeline under a distribution
    strategy's ``input_context`` (its shard, its per-replica batch); as given without one.

    Example:
        >>> sharded(tf.data.Dataset.range(4), 8, None)[1:]
        (8, 0)
    """
    if input_context is None:
        return dataset, batch_size, 0
    pipeline_id = input_context.input_pipeline_id
    return (dataset.shard(input_context.num_input_pipelines, pipeline_id),
            input_context.get_per_replica_batch_size(batch_size), pipeline_id)


def prefetched(dataset, training, deterministic, input_context):
    """``dataset`` with a dense pipeline's options (deterministic unless training allows
    otherwise; sharded already when ``input_context`` is given, else by data), prefetched.

    Example:
        >>> prefetched(tf.data.Dataset.range(2), False, False, None).options().deterministic
        True
    """
    options = tf.data.Options()
    options.deterministic = bool(deterministic or not training)
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF if input_context is not None
        else tf.data.experimental.AutoShardPolicy.DATA)
    return dataset.with_options(options).prefetch(AUTOTUNE)


def _pipeline(dataset, source, info, batch_size, training, seed, cache, shuffle_buffer,
              input_context, drop_remainder, deterministic):
    """Shard, decode, cache, shuffle, transform, normalise, batch and prefetch."""
    dataset, batch_size, pipeline_id = sharded(dataset, batch_size, input_context)
    preprocessing = info.preprocessing

    def decode(encoded, encoded_mask):
        image = to_model_channels(source.decode(encoded), preprocessing)
        return image, source.decode_mask(encoded_mask)

    dataset = dataset.map(decode, num_parallel_calls=AUTOTUNE, deterministic=True)
    if cache:
        dataset = dataset.cache()
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = _transformed(dataset, info, training, seed, pipeline_id)

    def finish(image, mask):
        return normalize(image, preprocessing), tf.cast(mask, tf.int32)

    dataset = dataset.map(finish, num_parallel_calls=AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return prefetched(dataset, training, deterministic, input_context)


def _transformed(dataset, info, training, seed, pipeline_id):
    """Training pairs through torchvision's training transform; the others fitted and padded
    to the input size."""
    size = info.preprocessing.image_size
    if not (training and info.augmentation):
        return dataset.map(lambda image, mask: fit_and_pad(image, mask, size),
                           num_parallel_calls=AUTOTUNE)
    if seed is not None:
        seed = zlib.crc32(f"{seed}/segmentation/{pipeline_id}".encode()) & 0x7FFFFFFF
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def transform(pair, pair_seed):
        return train_pair(*pair, pair_seed, base_size=info.base_size, crop_size=size,
                          scale_range=info.scale_range, flip=info.horizontal_flip)

    return tf.data.Dataset.zip(dataset, seeds).map(transform, num_parallel_calls=AUTOTUNE)


def load_segmentation(name="digit_scenes", split="train", batch_size=32, training=None, *,
                      data_dir=None, image_size=None, base_size=None, scale_range=SCALE_RANGE,
                      augment="auto", preprocessing=None, seed=None, deterministic=False,
                      cache=True, shuffle_buffer=10_000, input_context=None,
                      drop_remainder=None, holdout=None, skip_unreadable=False):
    """Batches of ``(images, masks)`` of segmentation data, and their :class:`SegmentationInfo`.

    Args:
        name: "digit_scenes", or a directory of images and masks (``root/<split>/{images,
            masks}`` or Pascal VOC's layout).
        split: "train", "validation" or "test".
        batch_size: global batch size (per replica with ``input_context``).
        training: shuffle and augment; defaults to ``split == "train"``.
        data_dir: where the mean image is cached.
        image_size: the model's input side (training crops and evaluation batches).
        base_size: the random resize's base length; default the input size's larger side.
        scale_range: the random shorter side in multiples of ``base_size`` (0.5, 2.0).
        augment: "auto" (torchvision's segmentation training transform) or None.
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
        ``(dataset, info)``: images float32 ``(batch,) + info.image_shape`` normalised by
        ``info.preprocessing``; masks int32 ``(batch, h, w)``, 255 ignored.

    Example:
        >>> train, info = load_segmentation("digit_scenes", "train", 32, seed=0)
        >>> info.num_examples, info.num_classes
        (2000, 11)
    """
    training = split == "train" if training is None else training
    source = get_source(name, data_dir=data_dir, download=False, manual_dir=None,
                        training=training, seed=seed, skip_unreadable=skip_unreadable)
    return load_source(
        source, split, batch_size, training, data_dir=data_dir, image_size=image_size,
        base_size=base_size, scale_range=scale_range, augment=augment,
        preprocessing=preprocessing, seed=seed, deterministic=deterministic, cache=cache,
        shuffle_buffer=shuffle_buffer, input_context=input_context,
        drop_remainder=drop_remainder, holdout=holdout)
