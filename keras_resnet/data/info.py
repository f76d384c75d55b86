"""What ``keras_resnet.data.load`` made: :class:`DatasetInfo`, the dataset's metadata and the
preprocessing a model trained on it carries."""

import dataclasses

from keras_resnet.data.augment.paper import CIFAR_PADDING
from keras_resnet.preprocessing import ImagePreprocessing


@dataclasses.dataclass(frozen=True, eq=False)
class DatasetInfo:
    """What :func:`load` made: the dataset's metadata and the model's preprocessing.

    Attributes:
        name: the dataset: "digits", a tfds name or a directory path.
        split: the split as given to :func:`load`.
        num_examples: images in the split (before sharding), or None if unknown.
        preprocessing: the ``ImagePreprocessing`` the images follow (what a model trained on
            them carries): size, resize policy, mean (the per-pixel mean image for CIFAR-style
            data, §4.2), class names.
        augmentation: "cifar", "imagenet" or None (the training augmentation applied).
        padding: CIFAR-style zero padding before the random crop (and for 10-crop).
        train_sides: ImageNet-style ``(min, max)`` random shorter side, or None.
        horizontal_flip: whether training flips images.
        ten_crop: whether each batch holds 10 crops per image (see ``ten_crop``).
        multilabel: whether labels are multi-hot rows (a multi-label task,
            ``keras_resnet.tasks``).
    """

    name: str
    split: str
    num_examples: object
    preprocessing: ImagePreprocessing
    augmentation: object = None
    padding: int = CIFAR_PADDING
    train_sides: object = None
    horizontal_flip: bool = True
    ten_crop: bool = False
    multilabel: bool = False

    @property
    def class_names(self):
        return self.preprocessing.class_names

    @property
    def num_classes(self):
        return self.preprocessing.num_classes

    @property
    def task_kind(self):
        """The kind of Task these labels train (``keras_resnet.tasks.KINDS``)."""
        return "multilabel" if self.multilabel else "classification"

    @property
    def image_shape(self):
        return (*self.preprocessing.image_size, self.preprocessing.channels)

    @property
    def mean(self):
        return self.preprocessing.mean

    def to_config(self):
        """A JSON-serializable dict; ``DatasetInfo.from_config(info.to_config())`` rebuilds it.

        Example:
            >>> info = keras_resnet.data.load("digits", "test", 32)[1]
            >>> DatasetInfo.from_config(info.to_config()).num_classes
            10
        """
        config = dataclasses.asdict(self)
        config["preprocessing"] = self.preprocessing.get_config()
        config["train_sides"] = None if self.train_sides is None else list(self.train_sides)
        return config

    @classmethod
    def from_config(cls, config):
        """Rebuild a ``DatasetInfo`` from :meth:`to_config`'s dict."""
        config = dict(config)
        config["preprocessing"] = ImagePreprocessing.from_config(config["preprocessing"])
        # Written before the kind was a field: multi-label data gave its preprocessing thresholds.
        config.setdefault("multilabel", config["preprocessing"].multilabel)
        return cls(**config)
