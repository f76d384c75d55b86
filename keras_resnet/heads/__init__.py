"""Task heads on keras_resnet backbones: semantic segmentation (FCN, DeepLabV3, DeepLabV3+)
and object detection (RetinaNet).

- :mod:`keras_resnet.heads.segmentation`: the segmentation head layers and blocks.
- :mod:`keras_resnet.heads.segmenters`: the models (``FCN``, ``DeepLabV3``,
  ``DeepLabV3Plus``), ``without_aux``, ``load_weights``, ``state_dict``.
- :mod:`keras_resnet.heads.detection`: RetinaNet's pyramid, subnets and anchors;
  :mod:`keras_resnet.heads.postprocess`: from raw outputs to detections (NMS in keras.ops).
- :mod:`keras_resnet.heads.detectors`: ``RetinaNet``, ``raw_model``, ``detections_model``,
  ``training_model``, its ``load_weights`` and ``state_dict``.
- :mod:`keras_resnet.heads.backbones`: the backbone a head reads, shared by both.

Example:
    >>> keras_resnet.heads.FCN("resnet18", classes=3, output_stride=None).output_shape
    (None, None, None, 3)
"""

from keras_resnet.heads import backbones, detection, detectors, postprocess, segmentation
from keras_resnet.heads.detectors import RetinaNet
from keras_resnet.heads.segmenters import (
    FCN,
    DeepLabV3,
    DeepLabV3Plus,
    load_weights,
    segmenter,
    state_dict,
    without_aux,
)

__all__ = ["DeepLabV3", "DeepLabV3Plus", "FCN", "RetinaNet", "backbones", "detection",
           "detectors", "load_weights", "postprocess", "segmentation", "segmenter",
           "state_dict", "without_aux"]
