"""The training augmentations, grouped:

- :mod:`.paper`: the paper's: §4.2's padding, random crop and flip for CIFAR-style images,
  §3.4's random shorter side, random crop, flip and PCA colour augmentation for ImageNet-style
  ones.
- :mod:`.modern`: the modern recipes': random-resized crop, RandAugment / TrivialAugment
  (:mod:`.auto_augment`: timm's ``rand-mM-mstd0.5-inc1`` and torchvision's
  ``TrivialAugmentWide``, with PIL's op arithmetic), random erasing, repeated augmentation.
- :mod:`.mixing`: MixUp, CutMix and their per-batch choice, with the targets they mix, as
  timm's ``Mixup(mode="batch")``: one ratio per batch, CutMix's corrected to its box.

Layers: :mod:`.paper` uses ``keras_resnet.data.images``; :mod:`.auto_augment` and
:mod:`.mixing` only Keras, TensorFlow and ``keras_resnet.errors``; :mod:`.modern` composes
the last two.
"""

from keras_resnet.data.augment.paper import (
    CIFAR_PADDING,
    IMAGENET_EIGENVALUES,
    IMAGENET_EIGENVECTORS,
    IMAGENET_TRAIN_SIDES,
    PCA_STDDEV,
    augment_image,
    cifar_augment,
    imagenet_augment,
    imagenet_sides,
    paper_augment,
    pca_lighting,
)
from keras_resnet.data.augment.auto_augment import AutoAugment
from keras_resnet.data.augment.mixing import MixUpOrCutMix, smoothed_targets
from keras_resnet.data.augment.modern import (
    BatchTransform,
    ImageAugmentation,
    check_recipe_data,
    random_resized_crop,
    repeated,
    train_size,
)

__all__ = [
    "AutoAugment", "BatchTransform", "CIFAR_PADDING", "IMAGENET_EIGENVALUES",
    "IMAGENET_EIGENVECTORS", "IMAGENET_TRAIN_SIDES", "ImageAugmentation", "MixUpOrCutMix",
    "PCA_STDDEV", "augment_image", "check_recipe_data", "cifar_augment", "imagenet_augment",
    "imagenet_sides", "paper_augment", "pca_lighting", "random_resized_crop", "repeated",
    "smoothed_targets", "train_size",
]
