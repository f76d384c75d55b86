"""Task heads on keras_resnet backbones: semantic segmentation (FCN, DeepLabV3, DeepLabV3+).

- :mod:`keras_resnet.heads.segmentation`: the head layers and blocks.
- :mod:`keras_resnet.heads.segmenters`: the models (``FCN``, ``DeepLabV3``,
  ``DeepLabV3Plus``), ``without_aux``, ``load_weights``, ``state_dict``.

Example:
    >>> keras_resnet.heads.FCN("resnet18", classes=3, output_stride=None).output_shape
    (None, None, None, 3)
"""

from keras_resnet.heads import segmentation
from keras_resnet.heads.segmenters import (
    FCN,
    DeepLabV3,
    DeepLabV3Plus,
    load_weights,
    segmenter,
    state_dict,
    without_aux,
)

__all__ = ["DeepLabV3", "DeepLabV3Plus", "FCN", "load_weights", "segmentation", "segmenter",
           "state_dict", "without_aux"]
