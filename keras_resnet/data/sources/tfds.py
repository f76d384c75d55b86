"""The ``"tfds"`` source: any tensorflow-datasets image classification dataset by name
(``"cifar10"``, ``"imagenette"``, ``"imagenet2012"`` with ``manual_dir``, ...). Splits
``"train"``, ``"validation"``, ``"test"``, raw tfds split strings (``"train[:10%]"``) and, for
CIFAR, the paper's 45k/5k split (§4.2): ``"train45k"`` = ``"train[:45000]"``, ``"val5k"`` =
``"train[45000:]"``. Names that look like paths are not tfds names.
"""

import os

from keras_resnet.data.sources.base import STANDARD_SPLITS, Source, decode_encoded, split_error
from keras_resnet.data.sources.registry import register, unknown_dataset
from keras_resnet.errors import InvalidArgument
from keras_resnet.extras import require

# §4.2: "45k/5k train/val split" of CIFAR-10's 50k training images.
SPLIT_ALIASES = {"train45k": "train[:45000]", "val5k": "train[45000:]"}
SPLIT_ALIAS_DATASETS = ("cifar10", "cifar100")


def _tfds_builder(name, data_dir):
    """The tfds builder of ``name``, or a ValueError; needs no network for unknown names."""
    tfds = require("tensorflow_datasets", f"Dataset {name!r} (a tensorflow-datasets name)")

    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError:
        import difflib

        known = tfds.list_builders(with_community_datasets=False)
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise unknown_dataset(
            name, f"list those with `tensorflow_datasets.list_builders()`{hint}"
        ) from None


def tfds_split(name, split, available=()):
    """The tfds split string :func:`load` reads for ``split`` of tfds dataset ``name``.

    ``"train45k"`` -> ``"train[:45000]"`` and ``"val5k"`` -> ``"train[45000:]"`` (the paper's
    CIFAR split, §4.2, for cifar10 and cifar100); ``"train"``, ``"validation"``, ``"test"``
    must be among ``available`` (when known); anything else passes through to tfds.

    Example:
        >>> tfds_split("cifar10", "val5k")
        'train[45000:]'
    """
    base_name = name.split("/")[0].split(":")[0]
    if split in SPLIT_ALIASES:
        if base_name not in SPLIT_ALIAS_DATASETS:
            raise InvalidArgument(
                f"`split` {split!r} (the paper's 45k/5k CIFAR split) is defined for "
                f"{', '.join(SPLIT_ALIAS_DATASETS)}; got dataset {name!r}. Use a tfds slice "
                "such as 'train[:90%]' instead."
            )
        return SPLIT_ALIASES[split]
    available = list(available)
    if available and split in STANDARD_SPLITS and split not in available:
        aliases = list(SPLIT_ALIASES) if base_name in SPLIT_ALIAS_DATASETS else []
        raise split_error(split, name, available + aliases)
    return split


def tfds_source(name, *, data_dir=None, download=True, manual_dir=None, training=False,
                seed=None, **options):
    """The ``Source`` of tfds dataset ``name`` (prepared first when ``download``; the files
    shuffled when ``training``, with ``seed``).

    Example:
        >>> tfds_source("cifar10", data_dir="/data").class_names[:2]  # doctest: +SKIP
        ['airplane', 'automobile']
    """
    import tensorflow_datasets as tfds

    builder = _tfds_builder(name, data_dir)
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
        raise InvalidArgument(
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
            raise InvalidArgument(
                f"Dataset {name!r} is not prepared in data_dir {builder.data_dir!r}; pass "
                f"`download=True` (or `manual_dir` for manually downloaded data). ({error})"
            ) from None
        cardinality = int(dataset.cardinality())
        return dataset, (cardinality if cardinality >= 0 else None)

    return Source(
        name=name,
        class_names=list(features[label_key].names),
        native_side=native_side,
        from_files=True,
        mean_key=f"tfds_{info.full_name.replace('/', '_')}",
        make=make,
        decode=decode_encoded,
        train_split="train" if not available or "train" in available else available[0],
    )


def looks_like_path(name):
    """Paths, not tfds names ("imagenette/160px" has a slash too, but no existing parent)."""
    if not isinstance(name, str):
        return True
    if os.path.isabs(name) or name.startswith((".", "~")):
        return True
    parent = os.path.dirname(name.rstrip(os.sep))
    return bool(parent) and os.path.isdir(parent)


def is_tfds_name(name):
    """Whether dataset ``name`` may be a tfds name (anything that does not look like a path)."""
    return not looks_like_path(name)


register("tfds", tfds_source, matches=is_tfds_name, description="a tensorflow-datasets name")
