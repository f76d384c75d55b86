"""keras_resnet: the networks of He et al. 2015, "Deep Residual Learning for Image
Recognition", as registered Keras 3 layers and functional models.

Example:
    >>> import keras_resnet
    >>> model = keras_resnet.ResNet50()
"""

__version__ = "0.1.0"

from keras_resnet.blocks import BottleneckBlock, ResidualBlock
from keras_resnet.models import (
    CifarResNet,
    ImageNetResNet,
    ResNet18,
    ResNet20,
    ResNet32,
    ResNet34,
    ResNet44,
    ResNet50,
    ResNet56,
    ResNet101,
    ResNet110,
    ResNet152,
    ResNet1202,
    build_resnet,
    from_keras_applications,
    get_model,
)
from keras_resnet.summary import count_multiply_adds, summary_table
from keras_resnet import data, distribute, training  # noqa: E402  (keras_resnet.data.load, ...)

__all__ = [
    "BottleneckBlock",
    "CifarResNet",
    "ImageNetResNet",
    "ResNet18",
    "ResNet20",
    "ResNet32",
    "ResNet34",
    "ResNet44",
    "ResNet50",
    "ResNet56",
    "ResNet101",
    "ResNet110",
    "ResNet152",
    "ResNet1202",
    "ResidualBlock",
    "build_resnet",
    "count_multiply_adds",
    "from_keras_applications",
    "get_model",
    "summary_table",
]
