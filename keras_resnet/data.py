"""Datasets and the paper's augmentations as ``tf.data`` pipelines.

:func:`load` returns a batched, prefetched ``tf.data.Dataset`` of ``(images, labels)`` (float32
NHWC images, int32 labels) and a :class:`DatasetInfo` describing how the images were made.
Three sources:

- ``"digits"``: scikit-learn's bundled 8x8 handwritten digits (1797 images, no network),
  scaled to 0..255, resized to 32x32 and repeated to 3 channels, so ``ResNet20()`` takes them.
  Fixed stratified split (seed 0): ``"test"`` 20% (360), ``"validation"`` 10% of the rest (144),
  ``"train"`` the remaining 1293.
- any tensorflow-datasets image classification dataset by name (``"cifar10"``,
  ``"imagenette"``, ``"imagenet2012"`` with ``manual_dir``, ...). Splits ``"train"``,
  ``"validation"``, ``"test"``, raw tfds split strings (``"train[:10%]"``) and, for CIFAR, the
  paper's 45k/5k split (§4.2): ``"train45k"`` = ``"train[:45000]"``, ``"val5k"`` =
  ``"train[45000:]"``.
- a directory ``root/<class_name>/*.{jpg,jpeg,png,bmp,gif}`` (class names sorted). With
  ``root/train`` and ``root/test`` (and optionally ``root/validation``) those are the splits;
  otherwise each file goes to ``"train"`` / ``"validation"`` / ``"test"`` (80/10/10) by a hash
  of its path relative to ``root``, so the split is stable across machines and runs.

Normalisation everywhere: ``image = image_uint8 * scale - mean`` with ``scale = 1/255`` and
``mean`` in the same [0, 1] units: the per-pixel mean image of the training split for
CIFAR-style data (§4.2), the per-channel ImageNet mean for ImageNet-style data (§3.4; the
paper's per-pixel mean of a 224 crop is not published, and per-channel is what it reduces to
under random crops; used for every ImageNet-style dataset). No division by a standard
deviation: the paper only subtracts the mean. The mean image always comes from the dataset's
whole "train" split (also for "train45k"/"val5k": the 5k held-out images add to it, a
negligible leak that keeps one mean per dataset); for tfds and folders it is computed in one
pass and cached as ``.npy`` under ``data_dir/keras_resnet`` or ``$KERAS_HOME/keras_resnet``
(default ``~/.keras/keras_resnet``).

Two preprocessing styles, picked by ``augment="auto"`` from the images' native size:

- ``"cifar"`` (side <= 64): images resized to ``image_size`` square (default 32; identity for
  CIFAR itself). Training (§4.2): 4-pixel zero padding (of the mean-subtracted image, as in
  the usual Torch recipe; ``4 * image_size / 32`` pixels at other sizes), a random crop back to
  ``image_size`` and a horizontal flip (no flip for digits: a mirrored digit is another
  digit). Evaluation: the single image.
- ``"imagenet"`` (larger): training (§3.4): shorter side resized to a random length in
  [256, 480], random 224x224 crop, horizontal flip, AlexNet-style PCA colour augmentation.
  Evaluation: shorter side resized to 256, centre 224 crop; or the 10-crop test of §3.4.
  ``image_size`` scales every length by ``image_size / 224``.

10-crop evaluation (``load(..., ten_crop=True)`` or :func:`ten_crop`) yields images
``(batch * 10, s, s, 3)``, image-major (rows ``10*i .. 10*i+9`` belong to image ``i``), with
labels ``(batch,)``; :func:`average_crops` turns ``(batch * 10, classes)`` scores back into
``(batch, classes)``.
"""

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import warnings
import zlib

import numpy as np
import tensorflow as tf

from keras_resnet.blocks import check_choice, check_positive_int

AUTOTUNE = tf.data.AUTOTUNE
SCALE = 1.0 / 255.0
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
AUGMENTATIONS = ("auto", "cifar", "imagenet", None)
STANDARD_SPLITS = ("train", "validation", "test")
# §4.2: "45k/5k train/val split" of CIFAR-10's 50k training images.
SPLIT_ALIASES = {"train45k": "train[:45000]", "val5k": "train[45000:]"}
SPLIT_ALIAS_DATASETS = ("cifar10", "cifar100")
TRAINING_SPLITS = ("train", "train45k")
DIGITS_SPLIT_SEED = 0
FOLDER_SPLIT_PERCENT = {"train": 80, "validation": 10, "test": 10}
CIFAR_MAX_SIDE = 64

# ImageNet statistics in [0, 1] units (RGB): the per-channel mean, and the eigenvalues and
# eigenvectors (columns) of the pixel covariance used by AlexNet-style PCA colour augmentation.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_EIGENVALUES = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGENVECTORS = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
PCA_STDDEV = 0.1

# §3.4 lengths at the paper's 224 crop; ``image_size`` scales them.
IMAGENET_CROP = 224
IMAGENET_TRAIN_SIDES = (256, 480)
IMAGENET_EVAL_SIDE = 256
CIFAR_SIZE = 32
CIFAR_PADDING = 4


@dataclasses.dataclass(frozen=True, eq=False)
class DatasetInfo:
    """What :func:`load` made, and everything needed to redo its evaluation preprocessing.

    Attributes:
        name: the dataset: "digits", a tfds name or a directory path.
        split: the split as given to :func:`load`.
        class_names: list of str, index = label.
        image_shape: ``(height, width, channels)`` of the model input.
        num_examples: images in the split (before sharding), or None if unknown.
        mean: float32 array, the per-pixel mean image ``(h, w, c)`` or per-channel mean
            ``(c,)`` in [0, 1] units: images are ``image_uint8 * scale - mean``.
        scale: 1/255.
        augmentation: "cifar", "imagenet" or None (the training augmentation applied).
        resize: "direct" (CIFAR style: resize to ``image_shape``) or "shorter_side" (ImageNet
            style: shorter side to ``resize_size``, then centre crop).
        resize_size: the evaluation resize length (shorter side, or the square side).
        padding: CIFAR-style zero padding before the random crop (and for 10-crop).
        train_sides: ImageNet-style ``(min, max)`` random shorter side, or None.
        horizontal_flip: whether training flips images.
        ten_crop: whether each batch holds 10 crops per image (see :func:`ten_crop`).
        num_classes: ``len(class_names)``.
    """

    name: str
    split: str
    class_names: list
    image_shape: tuple
    num_examples: object
    mean: np.ndarray = dataclasses.field(repr=False)
    scale: float = SCALE
    augmentation: object = None
    resize: str = "direct"
    resize_size: int = CIFAR_SIZE
    padding: int = CIFAR_PADDING
    train_sides: object = None
    horizontal_flip: bool = True
    ten_crop: bool = False
    num_classes: int = dataclasses.field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "class_names", [str(c) for c in self.class_names])
        object.__setattr__(self, "image_shape", tuple(int(s) for s in self.image_shape))
        object.__setattr__(self, "mean", np.asarray(self.mean, dtype=np.float32))
        if self.train_sides is not None:
            object.__setattr__(self, "train_sides", tuple(int(s) for s in self.train_sides))
        object.__setattr__(self, "num_classes", len(self.class_names))

    def to_config(self):
        """A JSON-serializable dict; ``DatasetInfo.from_config(info.to_config())`` rebuilds it.

        Example:
            >>> json.dumps(info.to_config())
        """
        return {
            "name": str(self.name),
            "split": self.split,
            "class_names": list(self.class_names),
            "num_classes": self.num_classes,
            "image_shape": list(self.image_shape),
            "image_size": self.image_shape[0],
            "channels": self.image_shape[2],
            "num_examples": self.num_examples,
            "mean": self.mean.tolist(),
            "scale": float(self.scale),
            "augmentation": self.augmentation,
            "resize": self.resize,
            "resize_size": self.resize_size,
            "padding": self.padding,
            "train_sides": None if self.train_sides is None else list(self.train_sides),
            "horizontal_flip": self.horizontal_flip,
            "ten_crop": self.ten_crop,
        }

    @classmethod
    def from_config(cls, config):
        """Rebuild a ``DatasetInfo`` from :meth:`to_config`'s dict.

        Example:
            >>> info = DatasetInfo.from_config(json.load(open("dataset.json")))
        """
        fields = {f.name for f in dataclasses.fields(cls) if f.init}
        return cls(**{k: v for k, v in config.items() if k in fields})


# ---------------------------------------------------------------------------------------------
# Image operations (pure TF, usable inside tf.data, tf.function and SavedModel signatures).


def _to_rgb(images):
    """Grayscale -> RGB (repeat), RGBA -> RGB (drop alpha); last axis is channels."""
    channels = images.shape[-1]
    if channels == 3:
        return images
    if channels == 1:
        return tf.repeat(images, 3, axis=-1)
    if channels == 4:
        return images[..., :3]
    if channels is None:
        return tf.cond(
            tf.equal(tf.shape(images)[-1], 1),
            lambda: tf.repeat(images[..., :1], 3, axis=-1),
            lambda: images[..., :3],
        )
    raise ValueError(f"`images` must have 1, 3 or 4 channels; got shape {images.shape}.")


def _resize_to_uint8(images, size):
    """Bilinear resize to ``size x size`` rounded back to uint8 (identity at the same size)."""
    resized = tf.image.resize(images, (size, size), method="bilinear")
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def resize_shorter_side(images, size):
    """Resize so that the shorter side is ``size``, keeping the aspect ratio (bilinear).

    Args:
        images: ``(h, w, c)`` or ``(batch, h, w, c)`` tensor.
        size: int or scalar int tensor.

    Returns:
        float32 tensor.

    Example:
        >>> resize_shorter_side(tf.zeros((300, 400, 3)), 256).shape  # (256, 341, 3)
    """
    shape = tf.shape(images)
    height = tf.cast(shape[-3], tf.float32)
    width = tf.cast(shape[-2], tf.float32)
    size = tf.cast(size, tf.float32)
    ratio = size / tf.minimum(height, width)
    new_height = tf.cast(tf.maximum(tf.round(height * ratio), size), tf.int32)
    new_width = tf.cast(tf.maximum(tf.round(width * ratio), size), tf.int32)
    return tf.image.resize(tf.cast(images, tf.float32), tf.stack([new_height, new_width]))


def center_crop(images, crop_size):
    """The central ``crop_size x crop_size`` window of ``(h, w, c)`` or ``(b, h, w, c)`` images.

    Example:
        >>> center_crop(tf.zeros((256, 341, 3)), 224).shape  # (224, 224, 3)
    """
    shape = tf.shape(images)
    top = (shape[-3] - crop_size) // 2
    left = (shape[-2] - crop_size) // 2
    return tf.image.crop_to_bounding_box(images, top, left, crop_size, crop_size)


def ten_crop(images, crop_size):
    """The 10 crops of §3.4's testing: 4 corners and centre, and their horizontal mirrors.

    Args:
        images: ``(batch, h, w, c)`` tensor with ``h, w >= crop_size``.
        crop_size: side of the square crops.

    Returns:
        ``(batch * 10, crop_size, crop_size, c)``, image-major: rows ``10*i .. 10*i+9`` are
        image ``i``'s top-left, top-right, bottom-left, bottom-right and centre crops, then the
        same five mirrored left-right. Average a model's outputs with
        :func:`average_crops` (``reshape(batch, 10, classes).mean(1)``).

    Example:
        >>> ten_crop(tf.zeros((2, 256, 256, 3)), 224).shape  # (20, 224, 224, 3)
    """
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4:
        raise ValueError(f"`images` must be (batch, h, w, c); got shape {images.shape}.")
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    offsets = [
        (0, 0),
        (0, width - crop_size),
        (height - crop_size, 0),
        (height - crop_size, width - crop_size),
        ((height - crop_size) // 2, (width - crop_size) // 2),
    ]
    crops = [
        tf.image.crop_to_bounding_box(images, top, left, crop_size, crop_size)
        for top, left in offsets
    ]
    crops += [tf.reverse(crop, axis=[2]) for crop in crops]
    stacked = tf.stack(crops, axis=1)  # (batch, 10, crop, crop, c)
    return tf.reshape(stacked, tf.concat([[-1, crop_size, crop_size], shape[3:]], axis=0))


def average_crops(predictions, num_crops=10):
    """Average per-crop predictions ``(batch * num_crops, ...)`` to ``(batch, ...)``.

    The inverse of :func:`ten_crop`'s layout (§3.4: "average the scores").

    Example:
        >>> probs = average_crops(model(ten_crop(images, 224)))
    """
    predictions = tf.convert_to_tensor(predictions)
    shape = tf.shape(predictions)
    grouped = tf.reshape(predictions, tf.concat([[-1, num_crops], shape[1:]], axis=0))
    return tf.reduce_mean(grouped, axis=1)


def cifar_augment(image, seed, *, padding=CIFAR_PADDING, flip=True):
    """§4.2: zero-pad ``padding`` pixels per side, random crop back, random horizontal flip.

    Args:
        image: ``(h, w, c)`` float image (already mean-subtracted: the padding is zeros).
        seed: shape ``[2]`` int seed of the stateless random ops.
        padding: pixels added per side (the crop moves by at most this much).
        flip: whether to flip left-right with probability 1/2.

    Returns:
        An ``(h, w, c)`` tensor: ``image`` translated by at most ``padding`` pixels.

    Example:
        >>> cifar_augment(tf.zeros((32, 32, 3)), seed=[0, 1]).shape  # (32, 32, 3)
    """
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    shape = tf.shape(image)
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    image = tf.image.stateless_random_crop(padded, shape, seed=crop_seed)
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    return image


def imagenet_sides(image_size=IMAGENET_CROP):
    """§3.4's lengths scaled to ``image_size``: ((min, max) train shorter side, eval side).

    Example:
        >>> imagenet_sides(64)  # ((73, 137), 73)
    """
    factor = image_size / IMAGENET_CROP
    low, high = (int(round(side * factor)) for side in IMAGENET_TRAIN_SIDES)
    return (low, high), int(round(IMAGENET_EVAL_SIDE * factor))


def imagenet_augment(image, seed, *, image_size=IMAGENET_CROP, sides=None, flip=True):
    """§3.4: shorter side resized to a random length in ``sides``, random square crop, flip.

    Args:
        image: ``(h, w, c)`` image (any size).
        seed: shape ``[2]`` int seed of the stateless random ops.
        image_size: side of the crop.
        sides: ``(min, max)`` shorter side; defaults to [256, 480] scaled by image_size/224.
        flip: whether to flip left-right with probability 1/2.

    Returns:
        float32 ``(image_size, image_size, c)`` tensor in the input's units.

    Example:
        >>> imagenet_augment(tf.zeros((375, 500, 3), tf.uint8), [0, 1]).shape  # (224, 224, 3)
    """
    low, high = sides or imagenet_sides(image_size)[0]
    side_seed, crop_seed, flip_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 3)
    )
    side = tf.random.stateless_uniform(
        [], side_seed, minval=low, maxval=high + 1, dtype=tf.int32
    )
    image = resize_shorter_side(image, side)
    channels = tf.shape(image)[-1]
    image = tf.image.stateless_random_crop(
        image, tf.stack([image_size, image_size, channels]), seed=crop_seed
    )
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    return image


def pca_lighting(image, seed, stddev=PCA_STDDEV):
    """AlexNet-style PCA colour augmentation (§3.4, after Krizhevsky et al. 2012).

    Adds ``eigenvectors @ (alpha * eigenvalues)`` with ``alpha ~ N(0, stddev)`` (one draw per
    image) to every pixel of an RGB image in [0, 1] units, using ImageNet's eigenvalues and
    eigenvectors (:data:`IMAGENET_EIGENVALUES`, :data:`IMAGENET_EIGENVECTORS`).

    Example:
        >>> pca_lighting(tf.zeros((224, 224, 3)), seed=[0, 1])  # a constant colour shift
    """
    alpha = tf.random.stateless_normal([3], seed, stddev=stddev)
    shift = tf.linalg.matvec(
        tf.constant(IMAGENET_EIGENVECTORS, tf.float32),
        alpha * tf.constant(IMAGENET_EIGENVALUES, tf.float32),
    )
    return image + shift


def _normalize(images, info):
    return tf.cast(images, tf.float32) * info.scale - tf.constant(info.mean, tf.float32)


def preprocess(images, info):
    """Evaluation preprocessing and normalisation of a batch of uint8 images, as in :func:`load`.

    Pure TF ops, so it can sit in a SavedModel signature. CIFAR style: resize to the model
    input (identity when already that size); ImageNet style: shorter side to
    ``info.resize_size``, centre crop. Then ``image * info.scale - info.mean``.

    Args:
        images: ``(batch, h, w, c)`` uint8 (or numbers in 0..255), c = 1, 3 or 4.
        info: a :class:`DatasetInfo` (or ``DatasetInfo.from_config(config)``).

    Returns:
        float32 ``(batch,) + info.image_shape``.

    Example:
        >>> logits = model(preprocess(uint8_images, info))
    """
    if not isinstance(info, DatasetInfo):
        raise TypeError(f"`info` must be a DatasetInfo; got {type(info).__name__}.")
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4:
        raise ValueError(f"`images` must be (batch, h, w, c); got shape {images.shape}.")
    images = _to_rgb(images)
    height = info.image_shape[0]
    if info.resize == "shorter_side":
        images = center_crop(resize_shorter_side(images, info.resize_size), height)
    else:
        if images.dtype != tf.uint8:
            images = tf.clip_by_value(tf.round(tf.cast(images, tf.float32)), 0.0, 255.0)
        images = _resize_to_uint8(images, height)
    return _normalize(images, info)


# ---------------------------------------------------------------------------------------------
# Sources: each gives uint8 (h, w, 3) images and int32 labels for a split.


@dataclasses.dataclass
class _Source:
    name: str
    class_names: list
    native_side: object  # largest image side, None if unknown
    from_files: bool  # read from record files (auto-shard by file), else in-memory / paths
    mean_key: str  # names the training split's contents, for the mean cache
    make: object  # split -> (dataset of (encoded, label), num_examples or None)
    decode: object  # encoded -> uint8 (h, w, 3)
    train_split: str = "train"
    flip: bool = True


def _split_error(split, name, available):
    return ValueError(
        f"`split` {split!r} does not exist for dataset {name!r}; available: "
        f"{', '.join(map(repr, available))}."
    )


# Digits -------------------------------------------------------------------------------------

_DIGITS_CACHE = {}


def _digits_arrays():
    """All 1797 digits as uint8 (8, 8, 1) images (0..16 scaled to 0..255) and labels."""
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
    images, labels, splits = _digits_arrays()

    def make(split):
        if split not in splits:
            raise _split_error(split, "digits", STANDARD_SPLITS)
        index = splits[split]
        return tf.data.Dataset.from_tensor_slices((images[index], labels[index])), len(index)

    return _Source(
        name="digits",
        class_names=[str(i) for i in range(10)],
        native_side=8,
        from_files=False,
        mean_key="digits",
        make=make,
        decode=_to_rgb,
        flip=False,  # a mirrored digit is another digit (or none)
    )


# tensorflow-datasets ------------------------------------------------------------------------


def _decode_encoded(encoded):
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def _tfds_builder(name, data_dir):
    """The tfds builder of ``name``, or a ValueError; needs no network for unknown names."""
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError:
        import difflib

        known = tfds.list_builders(with_community_datasets=False)
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
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
        >>> tfds_split("cifar10", "val5k")  # "train[45000:]"
    """
    base_name = name.split("/")[0].split(":")[0]
    if split in SPLIT_ALIASES:
        if base_name not in SPLIT_ALIAS_DATASETS:
            raise ValueError(
                f"`split` {split!r} (the paper's 45k/5k CIFAR split) is defined for "
                f"{', '.join(SPLIT_ALIAS_DATASETS)}; got dataset {name!r}. Use a tfds slice "
                "such as 'train[:90%]' instead."
            )
        return SPLIT_ALIASES[split]
    available = list(available)
    if available and split in STANDARD_SPLITS and split not in available:
        aliases = list(SPLIT_ALIASES) if base_name in SPLIT_ALIAS_DATASETS else []
        raise _split_error(split, name, available + aliases)
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
        raise ValueError(
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
            raise ValueError(
                f"Dataset {name!r} is not prepared in data_dir {builder.data_dir!r}; pass "
                f"`download=True` (or `manual_dir` for manually downloaded data). ({error})"
            ) from None
        cardinality = int(dataset.cardinality())
        return dataset, (cardinality if cardinality >= 0 else None)

    return _Source(
        name=name,
        class_names=list(features[label_key].names),
        native_side=native_side,
        from_files=True,
        mean_key=f"tfds_{info.full_name.replace('/', '_')}",
        make=make,
        decode=_decode_encoded,
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
        raise ValueError(f"`name`: directory {root!r} does not exist.")
    classes = sorted(
        entry.name
        for entry in os.scandir(root)
        if entry.is_dir() and not entry.name.startswith(".")
    )
    if not classes:
        raise ValueError(
            f"`name`: directory {root!r} has no class subfolders; expected "
            "root/<class_name>/<image files>."
        )
    return classes


def _folder_source(root, skip_unreadable):
    root = os.path.abspath(os.path.expanduser(os.fspath(root)))
    pre_split = all(os.path.isdir(os.path.join(root, s)) for s in ("train", "test"))
    if pre_split:
        class_names = _class_folders(os.path.join(root, "train"))
        split_roots = {
            s: os.path.join(root, s)
            for s in STANDARD_SPLITS
            if os.path.isdir(os.path.join(root, s))
        }
    else:
        class_names = _class_folders(root)
        split_roots = {"all": root}

    files, labels = [], []
    for split_name, split_root in split_roots.items():
        classes = _class_folders(split_root)
        unknown = sorted(set(classes) - set(class_names))
        if unknown:
            raise ValueError(
                f"`name`: {split_root!r} has class folders {unknown} that are not in "
                f"{os.path.join(root, 'train')!r}; every split needs the training classes."
            )
        for label, class_name in enumerate(class_names):
            folder = os.path.join(split_root, class_name)
            if not os.path.isdir(folder):
                continue
            found = _image_files(folder)
            if not found:
                raise ValueError(
                    f"`name`: class folder {folder!r} has no images "
                    f"({', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder."
                )
            files += [(split_name, path) for path in found]
            labels += [label] * len(found)

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
            raise ValueError(
                f"`name`: {message} Fix or remove them, or pass `skip_unreadable=True`."
            )
        warnings.warn(f"Skipping unreadable images: {message}", stacklevel=3)
    keep = [i for i, (error, _) in enumerate(results) if not error]
    native_side = max((max(results[i][1]) for i in keep), default=None)

    def split_of(index):
        split_name, path = files[index]
        if split_name != "all":
            return split_name
        relative = os.path.relpath(path, root).replace(os.sep, "/")
        bucket = int(hashlib.sha1(relative.encode("utf-8")).hexdigest()[:8], 16) % 100
        if bucket < FOLDER_SPLIT_PERCENT["train"]:
            return "train"
        if bucket < FOLDER_SPLIT_PERCENT["train"] + FOLDER_SPLIT_PERCENT["validation"]:
            return "validation"
        return "test"

    by_split = {}
    for index in keep:
        by_split.setdefault(split_of(index), []).append(index)
    available = [s for s in STANDARD_SPLITS if s in (split_roots if pre_split else STANDARD_SPLITS)]
    train_files = [files[i][1] for i in by_split.get("train", [])]
    fingerprint = hashlib.sha1()
    for path in train_files:
        stat = os.stat(path)
        fingerprint.update(f"{path}|{stat.st_mtime_ns}|{stat.st_size}|".encode())

    def make(split):
        if split not in available:
            raise _split_error(split, root, available)
        chosen = by_split.get(split, [])
        if not chosen:
            raise ValueError(
                f"`split` {split!r} of directory {root!r} has no images (files are split "
                "80/10/10 by a hash of their path); add images, or make root/train and "
                "root/test folders."
            )
        paths = [files[i][1] for i in chosen]
        split_labels = np.asarray([labels[i] for i in chosen], np.int32)
        return tf.data.Dataset.from_tensor_slices((paths, split_labels)), len(chosen)

    return _Source(
        name=root,
        class_names=class_names,
        native_side=native_side,
        from_files=False,
        mean_key=f"folder_{fingerprint.hexdigest()[:16]}",
        make=make,
        decode=lambda path: _decode_encoded(tf.io.read_file(path)),
    )


# ---------------------------------------------------------------------------------------------
# Mean image (§4.2: "the per-pixel mean subtracted"), cached.

_MEANS = {}


def _cache_dir(data_dir):
    if data_dir:
        return os.path.join(os.path.expanduser(os.fspath(data_dir)), "keras_resnet")
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "keras_resnet")


def _mean_image(source, size, data_dir):
    """Per-pixel mean (size, size, 3) of the training split in [0, 1] units; one pass, cached."""
    key = f"{source.mean_key}_mean_{size}x{size}"
    path = None
    if source.name != "digits":  # digits take a fraction of a second: no file
        path = os.path.join(_cache_dir(data_dir), f"{key}.npy")
    if (key, path) in _MEANS:
        return _MEANS[key, path]
    if path is not None and os.path.exists(path):
        _MEANS[key, path] = np.load(path)
        return _MEANS[key, path]
    dataset, _ = source.make(source.train_split)
    dataset = dataset.map(
        lambda x, y: _resize_to_uint8(source.decode(x), size), num_parallel_calls=AUTOTUNE
    ).batch(1024)
    total, count = np.zeros((size, size, 3), np.float64), 0
    for batch in dataset.as_numpy_iterator():
        total += batch.sum(axis=0, dtype=np.float64)
        count += len(batch)
    if count == 0:
        raise ValueError(f"The training split of {source.name!r} is empty; no mean image.")
    mean = (total / count * SCALE).astype(np.float32)
    if path is not None:
        try:  # a cache, so failing to write it is no error
            os.makedirs(os.path.dirname(path), exist_ok=True)
            temporary = f"{path}.{os.getpid()}.tmp.npy"
            np.save(temporary, mean)
            os.replace(temporary, path)
        except OSError as error:
            warnings.warn(f"Could not cache the mean image at {path!r}: {error}", stacklevel=3)
    _MEANS[key, path] = mean
    return mean


# ---------------------------------------------------------------------------------------------
# load


def _looks_like_path(name):
    """Paths, not tfds names ("imagenette/160px" has a slash too, but no existing parent)."""
    if not isinstance(name, str):
        return True
    if os.path.isabs(name) or name.startswith((".", "~")):
        return True
    parent = os.path.dirname(name.rstrip(os.sep))
    return bool(parent) and os.path.isdir(parent)


def _source(name, *, data_dir, download, manual_dir, training, seed, skip_unreadable):
    if name == "digits":
        return _digits_source()
    if os.path.isdir(os.path.expanduser(os.fspath(name))):
        return _folder_source(name, skip_unreadable)
    if _looks_like_path(name):
        raise ValueError(
            f"`name` {os.fspath(name)!r} is neither 'digits', a tfds dataset, nor an existing "
            f"directory (no directory at {os.path.abspath(os.path.expanduser(name))!r})."
        )
    builder = _tfds_builder(name, data_dir)
    return _tfds_source(name, builder, download, manual_dir, training, seed)


def _check_arguments(name, split, batch_size, training, augment, image_size, seed,
                     shuffle_buffer, input_context, cache, drop_remainder, deterministic):
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"`name` must be a str or path; got {type(name).__name__}.")
    if not isinstance(split, str):
        raise TypeError(f"`split` must be a str; got {type(split).__name__}.")
    check_positive_int("batch_size", batch_size)
    for argument, value in (("training", training), ("drop_remainder", drop_remainder)):
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"`{argument}` must be None, True or False; got {value!r}.")
    check_choice("augment", augment, AUGMENTATIONS)
    if image_size is not None:
        check_positive_int("image_size", image_size)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"`seed` must be None or an int; got {seed!r}.")
    check_positive_int("shuffle_buffer", shuffle_buffer)
    if input_context is not None and not isinstance(input_context, tf.distribute.InputContext):
        raise TypeError(
            "`input_context` must be None or a tf.distribute.InputContext; got "
            f"{type(input_context).__name__}."
        )
    if not isinstance(cache, bool):
        raise ValueError(f"`cache` must be True or False; got {cache!r}.")
    if deterministic and training and seed is None:
        raise ValueError(
            "`deterministic=True` with `training=True` needs a `seed` (the shuffle and the "
            "augmentation are random); got seed=None."
        )


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
    seed=None,
    deterministic=False,
    cache=True,
    shuffle_buffer=10_000,
    input_context=None,
    drop_remainder=None,
    ten_crop=False,
    manual_dir=None,
    skip_unreadable=False,
):
    """A batched, prefetched dataset of ``(images, labels)`` and its :class:`DatasetInfo`.

    Args:
        name: "digits", a directory of class folders, or a tfds dataset name.
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
        ten_crop: yield the 10 crops of :func:`ten_crop` per image (evaluation only): images
            ``(batch * 10, s, s, 3)``, labels ``(batch,)``; average with
            :func:`average_crops`. CIFAR-style crops come from the zero-padded image.
        manual_dir: tfds manual download directory (imagenet2012).
        skip_unreadable: in image folders, skip undecodable files (with a warning) instead of
            raising.

    Returns:
        ``(dataset, info)``: images float32 ``(batch,) + info.image_shape`` equal to
        ``image_uint8 * info.scale - info.mean``; labels int32 ``(batch,)``.

    Example:
        >>> train, info = load("digits", "train", batch_size=64, seed=0)
    """
    if training is None:
        training = split in TRAINING_SPLITS
    _check_arguments(name, split, batch_size, training, augment, image_size, seed,
                     shuffle_buffer, input_context, cache, drop_remainder, deterministic)
    if ten_crop and training:
        raise ValueError("`ten_crop=True` is for evaluation; got training=True.")
    drop_remainder = training if drop_remainder is None else drop_remainder

    source = _source(
        name, data_dir=data_dir, download=download, manual_dir=manual_dir,
        training=training, seed=seed, skip_unreadable=skip_unreadable,
    )
    style = augment
    if augment in ("auto", None):
        small = source.native_side is not None and source.native_side <= CIFAR_MAX_SIDE
        style = "cifar" if small else "imagenet"
    if style == "cifar":
        size = image_size or CIFAR_SIZE
        padding = int(round(CIFAR_PADDING * size / CIFAR_SIZE))
        mean = _mean_image(source, size, data_dir)
        resize, resize_size, train_sides = "direct", size, None
    else:
        size = image_size or IMAGENET_CROP
        padding = 0
        mean = np.asarray(IMAGENET_MEAN, np.float32)
        train_sides, resize_size = imagenet_sides(size)
        resize = "shorter_side"

    dataset, num_examples = source.make(split)
    info = DatasetInfo(
        name=source.name,
        split=split,
        class_names=source.class_names,
        image_shape=(size, size, 3),
        num_examples=num_examples,
        mean=mean,
        augmentation=style if augment is not None else None,
        resize=resize,
        resize_size=resize_size,
        padding=padding,
        train_sides=train_sides,
        horizontal_flip=source.flip,
        ten_crop=bool(ten_crop),
    )

    batch = batch_size
    pipeline_id = 0
    if input_context is not None:
        batch = input_context.get_per_replica_batch_size(batch_size)
        pipeline_id = input_context.input_pipeline_id
        dataset = dataset.shard(input_context.num_input_pipelines, pipeline_id)

    def decode(encoded, label):
        image = source.decode(encoded)
        if style == "cifar":  # fixed small size: resize once, before the cache
            image = _resize_to_uint8(image, size)
        return image, tf.cast(label, tf.int32)

    dataset = dataset.map(decode, num_parallel_calls=AUTOTUNE, deterministic=True)
    if cache and style == "cifar":
        dataset = dataset.cache()
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)

    if training and augment is not None:
        augment_seed = None
        if seed is not None:
            augment_seed = zlib.crc32(f"{seed}/augment/{pipeline_id}".encode()) & 0x7FFFFFFF
        seeds = tf.data.Dataset.random(seed=augment_seed, rerandomize_each_iteration=True)
        dataset = tf.data.Dataset.zip(dataset, seeds.batch(2))
        transform = lambda example, s: (_train_one(example[0], s, info), example[1])
    elif ten_crop:
        transform = lambda image, label: (_ten_crop_one(image, info), label)
    else:
        transform = lambda image, label: (preprocess(image[None], info)[0], label)
    dataset = dataset.map(transform, num_parallel_calls=AUTOTUNE)
    dataset = dataset.batch(batch, drop_remainder=drop_remainder)
    if ten_crop:
        dataset = dataset.map(
            lambda images, labels: (tf.reshape(images, (-1, size, size, 3)), labels)
        )

    options = tf.data.Options()
    options.deterministic = bool(deterministic or not training)
    if input_context is not None:  # already sharded above
        policy = tf.data.experimental.AutoShardPolicy.OFF
    elif source.from_files:
        policy = tf.data.experimental.AutoShardPolicy.AUTO
    else:  # in-memory arrays or lists of paths: shard the elements
        policy = tf.data.experimental.AutoShardPolicy.DATA
    options.experimental_distribute.auto_shard_policy = policy
    dataset = dataset.with_options(options)
    return dataset.prefetch(AUTOTUNE), info


def _train_one(image, seed, info):
    """The training augmentation of one uint8 image, per ``info`` (§4.2 or §3.4)."""
    size = info.image_shape[0]
    if info.resize == "direct":
        image = _normalize(_resize_to_uint8(image, size), info)
        return cifar_augment(image, seed, padding=info.padding, flip=info.horizontal_flip)
    geometry_seed, colour_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    image = imagenet_augment(
        image, geometry_seed, image_size=size, sides=info.train_sides,
        flip=info.horizontal_flip,
    )
    image = pca_lighting(image * info.scale, colour_seed)
    return image - tf.constant(info.mean, tf.float32)


def augment_image(image, seed, info):
    """Training augmentation of one ``(h, w, c)`` uint8 image as :func:`load` does it.

    Args:
        image: ``(h, w, c)`` uint8 image.
        seed: shape ``[2]`` int seed of the stateless random ops.
        info: the :class:`DatasetInfo` of the dataset.

    Returns:
        float32 ``info.image_shape`` tensor, normalised (the evaluation preprocessing when
        ``info.augmentation`` is None).

    Example:
        >>> x = augment_image(tf.zeros((375, 500, 3), tf.uint8), [0, 1], info)
    """
    image = _to_rgb(tf.convert_to_tensor(image))
    if info.augmentation is None:
        return preprocess(image[None], info)[0]
    return _train_one(image, seed, info)


def _ten_crop_one(image, info):
    """(10, s, s, 3) crops of one uint8 image: ImageNet style from the eval resize, CIFAR
    style from the normalised image zero-padded by ``info.padding``."""
    size = info.image_shape[0]
    if info.resize == "shorter_side":
        image = _normalize(resize_shorter_side(image, info.resize_size), info)
    else:
        image = _normalize(_resize_to_uint8(image, size), info)
        p = info.padding
        image = tf.pad(image, [[p, p], [p, p], [0, 0]])
    return ten_crop(image[None], size)


# ---------------------------------------------------------------------------------------------
# The preprocessing travels inside the .keras file (a zip archive) as one more JSON entry;
# Keras' loader reads only its own entries and ignores it.

PREPROCESSING_ENTRY = "keras_resnet_preprocessing.json"


def save_preprocessing(keras_path, info):
    """Store ``info`` (a :class:`DatasetInfo` or its config) inside the ``.keras`` file.

    Example:
        >>> model.save("m.keras"); save_preprocessing("m.keras", info)
    """
    import zipfile

    config = info.to_config() if isinstance(info, DatasetInfo) else dict(info)
    with zipfile.ZipFile(keras_path) as archive:
        present = PREPROCESSING_ENTRY in archive.namelist()
    if present:  # zip entries cannot be replaced in place: rewrite the archive without it
        tmp = f"{keras_path}.tmp"
        with zipfile.ZipFile(keras_path) as source, zipfile.ZipFile(tmp, "w") as target:
            for item in source.infolist():
                if item.filename != PREPROCESSING_ENTRY:
                    target.writestr(item, source.read(item.filename))
        os.replace(tmp, keras_path)
    with zipfile.ZipFile(keras_path, "a") as archive:
        archive.writestr(PREPROCESSING_ENTRY, json.dumps(config, indent=2))


def load_preprocessing(keras_path):
    """The :class:`DatasetInfo` stored in a ``.keras`` file, or None if it holds none.

    Example:
        >>> info = load_preprocessing("runs/resnet20-digits/model.keras")
    """
    import zipfile

    with zipfile.ZipFile(keras_path) as archive:
        if PREPROCESSING_ENTRY not in archive.namelist():
            return None
        return DatasetInfo.from_config(json.loads(archive.read(PREPROCESSING_ENTRY)))
