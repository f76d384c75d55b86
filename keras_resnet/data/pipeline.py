"""``load``: a source, the preprocessing, the augmentation and the ``tf.data`` plumbing (load ->
decode -> augment -> batch), and the one decision of the labels' format (:func:`label_format`).
"""

import math
import os
import zlib

import numpy as np
import tensorflow as tf

from keras_resnet.data.augment import modern
from keras_resnet.data.augment.paper import CIFAR_PADDING, imagenet_sides, paper_augment
from keras_resnet.data.detection import load_source as load_detection_source
from keras_resnet.data.holdout import Holdout, with_holdout
from keras_resnet.data.images import (
    CIFAR_SIZE,
    IMAGENET_CROP,
    normalize,
    preprocess,
    resize_shorter_side,
    resize_to_uint8,
    ten_crop,
    to_model_channels,
)
from keras_resnet.data.info import DatasetInfo
from keras_resnet.data.means import mean_image
from keras_resnet.data.segmentation import load_source as load_segmentation_source
from keras_resnet.data.sources import get_source
from keras_resnet.errors import InvalidArgument, InvalidType, check_choice, check_positive_int
from keras_resnet.multilabel import TASKS
from keras_resnet.preprocessing import IMAGENET_MEAN, ImagePreprocessing
from keras_resnet.tasks import LABEL_FORMATS, Task  # noqa: F401 (re-exported by data)

AUTOTUNE = tf.data.AUTOTUNE
AUGMENTATIONS = ("auto", "cifar", "imagenet", None)
TRAINING_SPLITS = ("train", "train45k")
CIFAR_MAX_SIDE = 64
# How labels leave the pipeline: int32 (batch,), or float32 (batch, classes) rows.


def _check_arguments(name, split, batch_size, training, augment, image_size, seed,
                     shuffle_buffer, input_context, cache, drop_remainder, deterministic,
                     preprocessing):
    if not isinstance(name, (str, os.PathLike)):
        raise InvalidType(f"`name` must be a str or path; got {type(name).__name__}.")
    if not isinstance(split, str):
        raise InvalidType(f"`split` must be a str; got {type(split).__name__}.")
    check_positive_int("batch_size", batch_size)
    for argument, value in (("training", training), ("drop_remainder", drop_remainder)):
        if value is not None and not isinstance(value, bool):
            raise InvalidArgument(f"`{argument}` must be None, True or False; got {value!r}.")
    check_choice("augment", augment, AUGMENTATIONS)
    if image_size is not None:
        check_positive_int("image_size", image_size)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InvalidArgument(f"`seed` must be None or an int; got {seed!r}.")
    check_positive_int("shuffle_buffer", shuffle_buffer)
    if input_context is not None and not isinstance(input_context, tf.distribute.InputContext):
        raise InvalidType(
            "`input_context` must be None or a tf.distribute.InputContext; got "
            f"{type(input_context).__name__}."
        )
    if not isinstance(cache, bool):
        raise InvalidArgument(f"`cache` must be True or False; got {cache!r}.")
    if deterministic and training and seed is None:
        raise InvalidArgument(
            "`deterministic=True` with `training=True` needs a `seed` (the shuffle and the "
            "augmentation are random); got seed=None."
        )
    if preprocessing is not None:
        if not isinstance(preprocessing, ImagePreprocessing):
            raise InvalidType(
                "`preprocessing` must be None or an ImagePreprocessing; got "
                f"{type(preprocessing).__name__}."
            )
        if image_size is not None and (image_size, image_size) != preprocessing.image_size:
            raise InvalidArgument(
                f"`image_size` {image_size} differs from the preprocessing's "
                f"{preprocessing.image_size}; pass one of them."
            )


def _style(source, augment, preprocessing):
    """"cifar" or "imagenet": the preprocessing and augmentation family of the images."""
    if preprocessing is not None:
        return "cifar" if preprocessing.resize == "direct" else "imagenet"
    if augment in ("cifar", "imagenet"):
        return augment
    small = source.native_side is not None and source.native_side <= CIFAR_MAX_SIDE
    return "cifar" if small else "imagenet"


def _make_preprocessing(source, style, image_size, data_dir, recipe=None):
    """The dataset's own preprocessing: §4.2's per-pixel mean for CIFAR-style images, §3.4's
    resize 256 / crop 224 and per-channel mean for ImageNet-style ones (a modern recipe's
    evaluation resize instead: torchvision's 232, timm's crop / 0.95, floored as timm does)."""
    labels = dict(class_names=source.class_names, source=str(source.name))
    if style == "cifar":
        size = image_size or CIFAR_SIZE
        return ImagePreprocessing(
            (size, size), "direct", mean=mean_image(source, size, data_dir), **labels
        )
    size = image_size or IMAGENET_CROP
    resize = imagenet_sides(size)[1]
    if recipe is not None:
        resize = math.floor(size * recipe.eval_resize_fraction + 1e-6)
    return ImagePreprocessing(
        (size, size), "shorter_side", resize, mean=IMAGENET_MEAN, **labels
    )


def label_format(source, task, recipe):
    """How the labels leave the pipeline, decided from the task and the recipe: "multi_hot"
    (float32 ``(batch, classes)``) for a multi-label task, "one_hot" (float32 rows) for a
    single-label task under a modern recipe, else "sparse" (int32 ``(batch,)``).

    Args:
        source: the dataset's ``Source`` (its own labels: one per image, or multi-hot rows).
        task: "single_label", "multilabel", or "auto" (the dataset's own); a single-label task
            on a dataset with images of none or several labels raises.
        recipe: a training recipe or None (only a modern one makes one-hot labels).

    Returns:
        One of :data:`LABEL_FORMATS`.

    Example:
        >>> label_format(keras_resnet.data.sources.digits_source(), "auto", None)
        'sparse'
    """
    check_choice("task", task, TASKS)
    if task == "segmentation":
        raise InvalidArgument(
            f"`task` 'segmentation' needs masks (a class per pixel); dataset "
            f"{str(source.name)!r} has a label per image. Use 'digit_scenes' or a folder of "
            "images and masks.")
    if task == "detection":
        raise InvalidArgument(
            f"`task` 'detection' needs boxes; dataset {str(source.name)!r} has a label per "
            "image. Use 'digit_boxes', a COCO JSON file or a CSV of boxes.")
    if task == "single_label" and source.multilabel and not source.one_label_each:
        raise InvalidArgument(
            f"`task` 'single_label' needs one label per image; dataset {str(source.name)!r} "
            "has images with none or several. Use task='multilabel'."
        )
    multilabel = source.multilabel if task == "auto" else task == "multilabel"
    kind = "multilabel" if multilabel else "classification"
    return Task(kind, len(source.class_names), "sigmoid" if multilabel else "softmax").label_format(recipe)


def _labelled(preprocessing, source):
    """A given preprocessing naming the dataset's classes (a model's own, or renamed)."""
    if preprocessing.class_names == source.class_names and preprocessing.thresholds is None:
        return preprocessing
    return preprocessing.with_class_names(source.class_names)


def _augmentation(style, preprocessing):
    """``(padding, train_sides)``: §4.2's 4-pixel padding, or §3.4's [256, 480] shorter side,
    both scaled to the input size."""
    size = preprocessing.image_size[0]
    if style == "cifar":
        return int(round(CIFAR_PADDING * size / CIFAR_SIZE)), None
    return 0, imagenet_sides(size)[0]


def load(
    name="digits",
    split="train",
    batch_size=128,
    training=None,
    *,
    data_dir=None,
    download=True,
    image_size=None,
    augment="auto",
    preprocessing=None,
    seed=None,
    deterministic=False,
    cache=True,
    shuffle_buffer=10_000,
    input_context=None,
    drop_remainder=None,
    ten_crop=False,
    manual_dir=None,
    skip_unreadable=False,
    task="auto",
    recipe=None,
    holdout=None,
):
    """A batched, prefetched dataset of ``(images, labels)`` and its :class:`DatasetInfo`.

    Args:
        name: "digits", "digit_canvases" (multi-label), "digit_scenes" (segmentation), a
            directory of class folders or of images and masks, a labels file (``.csv`` of
            ``path,label;label;...[,split]``), or a tfds dataset name.
        split: "train", "validation", "test"; for cifar10/cifar100 also "train45k" and
            "val5k" (§4.2); for tfds also raw split strings ("train[:10%]").
        batch_size: global batch size (per replica with ``input_context``).
        training: shuffle and augment; defaults to ``split in ("train", "train45k")``.
        data_dir: tfds data directory; also where mean images are cached (else
            ``$KERAS_HOME/keras_resnet``, default ``~/.keras/keras_resnet``).
        download: let tfds download and prepare the dataset.
        image_size: model input side; default 32 (CIFAR style) or 224 (ImageNet style).
        augment: "auto" ("cifar" for images of side <= 64, else "imagenet"), "cifar",
            "imagenet" or None (no augmentation; preprocessing still follows "auto").
        preprocessing: an ``ImagePreprocessing`` to follow instead of the dataset's own
            (a pretrained model's, for fine-tuning): its size, resize policy and
            normalisation; the class names are the dataset's. Its resize policy picks the
            augmentation ("direct": CIFAR style, "shorter_side": ImageNet style).
        seed: seeds the shuffle and the stateless augmentation ops; with the same seed (and
            the same global TF seed) two loads give identical batches.
        deterministic: keep element order deterministic (``tf.data.Options.deterministic``);
            needs ``seed`` when training. Evaluation pipelines are always deterministic.
        cache: cache decoded CIFAR-style images in memory before the random augmentation
            (ImageNet-style images, at full size, are never cached).
        shuffle_buffer: shuffle buffer size (training only).
        input_context: a ``tf.distribute.InputContext`` (from
            ``strategy.distribute_datasets_from_function``): this pipeline reads shard
            ``input_pipeline_id`` of ``num_input_pipelines`` and batches
            ``input_context.get_per_replica_batch_size(batch_size)``.
        drop_remainder: drop the last partial batch; defaults to ``training``.
        ten_crop: yield the 10 crops of ``ten_crop`` per image (evaluation only): images
            ``(batch * 10, s, s, 3)``, labels ``(batch,)``; average with
            ``average_crops``. CIFAR-style crops come from the zero-padded image.
        manual_dir: tfds manual download directory (imagenet2012).
        skip_unreadable: in image folders and labels files, skip undecodable files (with a
            warning) instead of raising.
        task: "single_label", "multilabel", or "auto": the dataset's own (multi-label for
            labels files and digit canvases). A multi-label task gives multi-hot labels (a
            single-label dataset's as one-hot rows).
        recipe: a modern training recipe (``keras_resnet.recipes``; None or a paper recipe:
            the paper's pipeline): every split's labels become one-hot float32 rows, and
            training takes the recipe's augmentation (``keras_resnet.data.augment``): random-
            resized crops at its training size, flip, RandAugment/TrivialAugment, random
            erasing, MixUp/CutMix targets, repeated augmentation.
        holdout: a :class:`~keras_resnet.data.holdout.Holdout`: ``"validation"`` is that
            share of each class held out of the training split, and ``"train"`` the rest
            (for data without a validation split; ``keras-resnet train`` does this).

    Returns:
        ``(dataset, info)``: images float32 ``(batch,) + info.image_shape`` normalised by
        ``info.preprocessing``; labels int32 ``(batch,)``, or float32 multi-hot
        ``(batch, classes)`` for a multi-label task (``info.multilabel``). Data with masks
        ("digit_scenes", mask folders) give int32 ``(batch, h, w)`` masks instead
        (:func:`keras_resnet.data.segmentation.load_source`); data with boxes ("digit_boxes",
        COCO JSON, box CSVs) ``{"boxes", "classes"}`` (:mod:`keras_resnet.data.detection`).

    Example:
        >>> train, info = load("digits", "train", batch_size=64, seed=0)
        >>> info.num_examples, info.image_shape
        (1293, (32, 32, 3))
    """
    if training is None:
        training = split in TRAINING_SPLITS
    _check_arguments(name, split, batch_size, training, augment, image_size, seed,
                     shuffle_buffer, input_context, cache, drop_remainder, deterministic,
                     preprocessing)
    if ten_crop and training:
        raise InvalidArgument("`ten_crop=True` is for evaluation; got training=True.")
    if holdout is not None and not isinstance(holdout, Holdout):
        raise InvalidType(f"`holdout` must be None or a Holdout; got {type(holdout).__name__}.")
    source = get_source(  # a hold-out needs the training split in a fixed order
        name, data_dir=data_dir, download=download, manual_dir=manual_dir,
        training=training and holdout is None, seed=seed, skip_unreadable=skip_unreadable,
    )
    # Segmentation and detection data: (images, masks) and (images, boxes) batches; a paper
    # recipe sets no data option there.
    if source.masks or getattr(source, "boxes", False):
        dense_task = "segmentation" if source.masks else "detection"
        load_dense = load_segmentation_source if source.masks else load_detection_source
        return load_dense(
            source, split, batch_size, training, data_dir=data_dir, image_size=image_size,
            augment=augment, preprocessing=preprocessing, seed=seed, deterministic=deterministic,
            cache=cache, shuffle_buffer=shuffle_buffer, input_context=input_context,
            drop_remainder=drop_remainder, holdout=holdout, unsupported={
                "ten_crop": (ten_crop, False),
                "task": ("auto" if task == dense_task else task, "auto"),
                "recipe": (recipe if getattr(recipe, "modern", False) else None, None)})
    if holdout is not None:
        source = with_holdout(source, holdout)
    if recipe is not None and not recipe.modern:
        recipe = None  # the paper's recipes: the paper's pipeline
    labels = label_format(source, task, recipe)
    multilabel = labels == "multi_hot"
    style = _style(source, augment, preprocessing)
    if preprocessing is None:
        preprocessing = _make_preprocessing(source, style, image_size, data_dir, recipe)
    else:
        preprocessing = _labelled(preprocessing, source)
    padding, train_sides = _augmentation(style, preprocessing)
    dataset, num_examples = source.make(split)
    info = DatasetInfo(
        name=source.name, split=split, num_examples=num_examples, preprocessing=preprocessing,
        augmentation=style if augment is not None else None, padding=padding,
        train_sides=train_sides, horizontal_flip=source.flip, ten_crop=bool(ten_crop),
        multilabel=multilabel,
    )
    if recipe is not None:
        modern.check_recipe_data(recipe, preprocessing)
        if ten_crop:
            raise InvalidArgument("`ten_crop` is the paper's test; it does not go with a modern `recipe`.")
    dataset = _pipeline(dataset, source, info, style, labels, batch_size, training, seed, cache,
                        shuffle_buffer, input_context,
                        training if drop_remainder is None else drop_remainder, deterministic,
                        recipe)
    return dataset, info


def _pipeline(dataset, source, info, style, labels, batch_size, training, seed, cache,
              shuffle_buffer, input_context, drop_remainder, deterministic, recipe=None):
    """Shard, decode, cache, shuffle, augment or preprocess, batch, mix and prefetch."""
    batch, pipeline_id = batch_size, 0
    if input_context is not None:
        batch = input_context.get_per_replica_batch_size(batch_size)
        pipeline_id = input_context.input_pipeline_id
        dataset = dataset.shard(input_context.num_input_pipelines, pipeline_id)
    dataset = _decoded(dataset, source, info, style, labels)
    if cache and style == "cifar":
        dataset = dataset.cache()
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    modern_recipe = recipe if training else None
    if modern_recipe is not None and info.num_examples:
        dataset = modern.repeated(dataset, recipe.repeated_augmentation, info.num_examples)
    augment_seed = None
    if seed is not None:
        augment_seed = zlib.crc32(f"{seed}/augment/{pipeline_id}".encode()) & 0x7FFFFFFF
    dataset = _augmented(dataset, info, training, modern_recipe, augment_seed)
    dataset = dataset.batch(batch, drop_remainder=drop_remainder)
    if modern_recipe is not None:
        dataset = _mixed(dataset, modern_recipe, info, augment_seed)
    if info.ten_crop:
        dataset = dataset.map(
            lambda images, labels: (tf.reshape(images, (-1, *info.image_shape)), labels)
        )
    options = _options(source, training, deterministic, input_context)
    return dataset.with_options(options).prefetch(AUTOTUNE)


def _decoded(dataset, source, info, style, labels):
    """Images decoded to the model's channels (CIFAR style: resized once, before the cache),
    labels in format ``labels``."""
    size = info.preprocessing.image_size
    convert_label = _label_converter(source, labels, info.num_classes)

    def decode(encoded, label):
        image = to_model_channels(source.decode(encoded), info.preprocessing)
        if style == "cifar":  # fixed small size: resize once, before the cache
            image = resize_to_uint8(image, size, info.preprocessing.interpolation)
        return image, convert_label(label)

    return dataset.map(decode, num_parallel_calls=AUTOTUNE, deterministic=True)


def _augmented(dataset, info, training, recipe, seed):
    """Each image augmented for training (a modern ``recipe``'s way, else the paper's), cut
    into its ten crops, or preprocessed for evaluation."""
    if training and (recipe is not None or info.augmentation is not None):
        if recipe is not None:
            augment = modern.ImageAugmentation(recipe, info.preprocessing, info.horizontal_flip)
        else:
            augment = lambda image, s: paper_augment(image, s, info)  # noqa: E731
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        dataset = tf.data.Dataset.zip(dataset, seeds.batch(2))
        transform = lambda example, s: (augment(example[0], s), example[1])  # noqa: E731
    elif info.ten_crop:
        transform = lambda image, label: (_ten_crop_one(image, info), label)  # noqa: E731
    else:
        transform = lambda image, label: (preprocess(image[None], info)[0], label)  # noqa: E731
    return dataset.map(transform, num_parallel_calls=AUTOTUNE)


def _mixed(dataset, recipe, info, seed):
    """Batches through a modern recipe's per-batch transform (erasing, targets, MixUp/CutMix)."""
    mixing = modern.BatchTransform(recipe, info.num_classes, info.multilabel)
    batch_seeds = tf.data.Dataset.random(
        seed=None if seed is None else seed + 1, rerandomize_each_iteration=True)
    return tf.data.Dataset.zip(dataset, batch_seeds.batch(2)).map(
        lambda example, s: mixing(example[0], example[1], s), num_parallel_calls=AUTOTUNE)


def _options(source, training, deterministic, input_context):
    """Determinism (always when evaluating) and the auto-shard policy the source allows."""
    options = tf.data.Options()
    options.deterministic = bool(deterministic or not training)
    if input_context is not None:  # already sharded
        policy = tf.data.experimental.AutoShardPolicy.OFF
    elif source.from_files:
        policy = tf.data.experimental.AutoShardPolicy.AUTO
    else:  # in-memory arrays or lists of paths: shard the elements
        policy = tf.data.experimental.AutoShardPolicy.DATA
    options.experimental_distribute.auto_shard_policy = policy
    return options


def _label_converter(source, labels, classes):
    """The source's labels (int32 class ids, or multi-hot rows) in format ``labels``."""
    if labels == "sparse":
        if source.multilabel:  # one label each, checked by label_format
            return lambda label: tf.cast(tf.argmax(label), tf.int32)
        return lambda label: tf.cast(label, tf.int32)
    if source.multilabel:  # multi-hot rows (one-hot ones when one label each)
        return lambda label: tf.cast(label, tf.float32)
    return lambda label: tf.one_hot(tf.cast(label, tf.int32), classes)


def _ten_crop_one(image, info):
    """(10, s, s, 3) crops of one uint8 image: ImageNet style from the eval resize, CIFAR
    style from the normalised image zero-padded by ``info.padding``."""
    preprocessing = info.preprocessing
    size = preprocessing.image_size
    if preprocessing.resize == "shorter_side":
        image = resize_shorter_side(image, preprocessing.resize_size, preprocessing.interpolation)
        image = normalize(image, preprocessing)
    else:
        image = normalize(resize_to_uint8(image, size, preprocessing.interpolation), preprocessing)
        p = info.padding
        image = tf.pad(image, [[p, p], [p, p], [0, 0]])
    return ten_crop(image[None], size[0])


def as_numpy(dataset, limit=None):
    """``(images, labels)`` NumPy arrays of a batched dataset (at most ``limit`` images).

    Example:
        >>> images, labels = as_numpy(load("digits", "test", 64)[0])
        >>> images.shape
        (360, 32, 32, 3)
    """
    images, labels = [], []
    count = 0
    for x, y in dataset.as_numpy_iterator():
        images.append(x)
        labels.append(y)
        count += len(y)
        if limit is not None and count >= limit:
            break
    images, labels = np.concatenate(images), np.concatenate(labels)
    return (images, labels) if limit is None else (images[:limit], labels[:limit])
