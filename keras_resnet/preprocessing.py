"""The one description of what a model's inputs must be: :class:`ImagePreprocessing`.

A model expects images prepared in one particular way: resized by some policy to its input
size, channels in some order, scaled, mean subtracted, maybe divided by a standard deviation.
Pretrained weights fix that recipe (torchvision: ImageNet mean and std; keras.applications:
Caffe's BGR mean), a data pipeline fixes it for a model trained here (the paper's per-pixel
mean, §4.2), and export, predict, serving, evaluation and fine-tuning must all repeat it
exactly. :class:`ImagePreprocessing` holds it, with the class names, as a registered Keras
layer that sits right after the model's input and computes nothing (identity), so Keras' own
saving stores it inside the ``.keras`` file and every backend reads it back.

    normalised = (pixels[..., channel_order] * scale - mean) / std

with ``pixels`` in 0..255, after the resize policy. ``channel_order`` says what the model's
channels are: "rgb" or "bgr" (3), "grey" (1: colour images are converted, ITU-R 601 luma), or
"stacked" (as many as ``mean`` has values, taken as they come: RGB-D, multispectral; a
pretrained RGB conv1 adapted to C channels sees them in the weights' order, R, G, B, R, ...).
Resize policies:

- ``"direct"``: resize to the model's input size (CIFAR-style data, digits);
- ``"shorter_side"``: resize the shorter side to ``resize_size``, then centre-crop the input
  size (ImageNet evaluation, §3.4: 256 then 224).

It also names the classes the data labels (``class_names``), since the data that fixes the
inputs names them. What the outputs are (classification or multi-label, the head's activation,
a multi-label model's decision thresholds) is the model's Task (``keras_resnet.tasks``); models
saved before Tasks existed kept a multi-label model's ``thresholds`` here, which still load
(read-only: ``keras_resnet.tasks.task_of`` turns them into the model's Task).

Nothing here imports TensorFlow; the ``tf.data`` and SavedModel versions of the same steps
are in ``keras_resnet.data``.

Example:
    >>> model = keras_resnet.ResNet20()
    >>> of(model).class_names[:3]
    ['0', '1', '2']
"""

import json

import keras
import numpy as np

from keras_resnet.errors import InvalidArgument, InvalidType

RESIZE_POLICIES = ("direct", "shorter_side")
INTERPOLATIONS = ("bilinear", "bicubic")
CHANNEL_ORDERS = ("rgb", "bgr", "grey", "stacked")
LAYER_NAME = "preprocessing"

# ImageNet statistics in [0, 1] units, RGB (torchvision, timm, keras-hub).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# keras.applications' "caffe" mode: BGR order, mean in 0..255 units, no scaling.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def _check_choice(argument, value, allowed):
    if value not in allowed:
        raise InvalidArgument(
            f"`{argument}` must be one of {', '.join(map(repr, allowed))}; got {value!r}."
        )


def _positive_int(argument, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidArgument(f"`{argument}` must be a positive integer; got {value!r}.")
    return int(value)


def _checked_thresholds(thresholds, class_names):
    """``thresholds`` as a list of floats, one per class name (or None)."""
    if thresholds is None:
        return None
    try:
        values = None if isinstance(thresholds, str) else np.asarray(thresholds, np.float64)
    except (TypeError, ValueError):
        values = None
    if values is None or values.ndim != 1 or not np.all(np.isfinite(values)):
        raise InvalidArgument(
            f"`thresholds` must be None or one finite number per class; got {thresholds!r}."
        )
    if class_names is None or len(values) != len(class_names):
        raise InvalidArgument(
            f"`thresholds` must hold one value per class name ({len(class_names or [])} "
            f"classes); got {len(values)} values."
        )
    return [float(v) for v in values]


@keras.saving.register_keras_serializable(package="keras_resnet")
class ImagePreprocessing(keras.layers.Layer):
    """How a model's inputs are made from images, and what its outputs are called.

    An identity layer: it sits after the model's ``Input`` and carries the recipe in its
    config, so ``model.save`` / ``keras.saving.load_model`` keep it. Read it with
    :func:`of`.

    Args:
        image_size: ``(height, width)`` of the model input.
        resize: "direct" (resize to ``image_size``) or "shorter_side" (shorter side to
            ``resize_size``, then a centre crop of ``image_size``).
        resize_size: the shorter side for "shorter_side"; default ``image_size[0]``.
        interpolation: "bilinear" or "bicubic".
        channel_order: "rgb", "bgr" (Caffe-trained weights), "grey" (one channel) or
            "stacked" (``len(mean)`` channels taken as given).
        scale: multiplies the 0..255 pixels (1/255 gives [0, 1]).
        mean: subtracted after scaling: one value per channel, or a per-pixel mean image
            ``(height, width, channels)`` (the paper's CIFAR preprocessing, §4.2); default
            zeros (a "stacked" recipe must give it: it fixes the number of channels).
        std: None, or one value per channel to divide by.
        class_names: the name of each output class (index = class id), or None.
        source: where the recipe comes from ("digits", "torchvision_v1", ...).
        thresholds: read from models saved before Tasks existed (a multi-label model's
            per-class thresholds, now in its Task); new code leaves it None.

    Example:
        >>> p = ImagePreprocessing((224, 224), "shorter_side", 256, mean=IMAGENET_MEAN,
        ...                        std=IMAGENET_STD, class_names=None)
        >>> p.normalize(np.full((1, 224, 224, 3), 255.0)).shape
        (1, 224, 224, 3)
    """

    def __init__(
        self,
        image_size,
        resize="direct",
        resize_size=None,
        interpolation="bilinear",
        channel_order="rgb",
        scale=1.0 / 255.0,
        mean=None,
        std=None,
        class_names=None,
        source=None,
        thresholds=None,
        **kwargs,
    ):
        kwargs.setdefault("name", LAYER_NAME)
        super().__init__(**kwargs)
        if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
            image_size = (image_size, image_size)
        if not isinstance(image_size, (tuple, list)) or len(image_size) != 2:
            raise InvalidArgument(f"`image_size` must be (height, width); got {image_size!r}.")
        self.image_size = tuple(_positive_int("image_size", s) for s in image_size)
        _check_choice("resize", resize, RESIZE_POLICIES)
        self.resize = resize
        self.resize_size = _positive_int(
            "resize_size", self.image_size[0] if resize_size is None else resize_size
        )
        if resize == "shorter_side" and self.resize_size < min(self.image_size):
            raise InvalidArgument(
                f"`resize_size` {self.resize_size} is smaller than the crop {self.image_size}."
            )
        _check_choice("interpolation", interpolation, INTERPOLATIONS)
        self.interpolation = interpolation
        _check_choice("channel_order", channel_order, CHANNEL_ORDERS)
        self.channel_order = channel_order
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0:
            raise InvalidArgument(f"`scale` must be a positive number; got {scale!r}.")
        self.scale = float(scale)
        if mean is None:
            if channel_order == "stacked":
                raise InvalidArgument(
                    "`mean` is needed with channel_order='stacked': one value per channel."
                )
            mean = (0.0,) * (1 if channel_order == "grey" else 3)
        self.mean = np.asarray(mean, np.float32)
        if self.mean.ndim not in (1, 3) or (
            self.mean.ndim == 3 and self.mean.shape[:2] != self.image_size
        ):
            raise InvalidArgument(
                f"`mean` must hold one value per channel or be a {self.image_size} mean image "
                f"with channels last; got shape {self.mean.shape}."
            )
        self.std = None if std is None else np.asarray(std, np.float32)
        if self.std is not None and (self.std.ndim != 1 or np.any(self.std <= 0)):
            raise InvalidArgument(f"`std` must be None or positive values per channel; got {std!r}.")
        channels = self.channels
        for argument, values in (("mean", self.mean), ("std", self.std)):
            one_for_all = values is not None and values.shape == (1,)  # broadcast to every channel
            if values is not None and values.shape[-1] != channels and not one_for_all:
                raise InvalidArgument(
                    f"`{argument}` must hold {channels} value(s) per pixel for channel_order="
                    f"{channel_order!r}; got shape {values.shape}."
                )
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.source = source
        self.thresholds = _checked_thresholds(thresholds, self.class_names)

    # An identity in the model: the layer exists to be saved with it.
    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    @property
    def channels(self):
        """The number of input channels the recipe makes (1, 3, or ``len(mean)`` if stacked)."""
        if self.channel_order == "stacked":
            return int(self.mean.shape[-1])
        return 1 if self.channel_order == "grey" else 3

    def for_channels(self, channels):
        """The recipe for a model whose pretrained RGB conv1 was adapted to ``channels``
        (``keras_resnet.weights.adapt_input_kernel``): 1 channel is grey, with the mean of
        the means and stds; C > 3 are stacked, means and stds repeated as the filters are.

        Example:
            >>> ImagePreprocessing(32, mean=(0.2, 0.4, 0.6)).for_channels(1).mean.round(2)
            array([0.4], dtype=float32)
        """
        if channels == self.channels:
            return self
        if self.channel_order not in ("rgb", "bgr"):
            raise InvalidArgument(
                f"Only an RGB or BGR recipe can be adapted to {channels} channels; this one "
                f"is {self.channel_order!r} with {self.channels}."
            )
        if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1:
            raise InvalidArgument(f"`channels` must be a positive integer; got {channels!r}.")
        if channels == 1:
            adapt, order = (lambda v: v.mean(axis=-1, keepdims=True)), "grey"
        else:
            def adapt(values):
                repeats = [1] * (values.ndim - 1) + [-(-channels // 3)]
                return np.tile(values, repeats)[..., :channels]
            order = "stacked"
        config = self.get_config()
        config.update(
            channel_order=order, mean=adapt(self.mean).tolist(),
            std=None if self.std is None else adapt(self.std).tolist(),
        )
        return ImagePreprocessing(**config)

    @property
    def num_classes(self):
        return None if self.class_names is None else len(self.class_names)

    @property
    def multilabel(self):
        """True for a multi-label model saved before Tasks existed (it carried ``thresholds``)."""
        return self.thresholds is not None

    def normalize(self, pixels):
        """``(pixels[..., order] * scale - mean) / std`` of resized 0..255 images (NumPy).

        Example:
            >>> ImagePreprocessing(2, mean=(0.5, 0.5, 0.5)).normalize(np.full((2, 2, 3), 255))[0, 0]
            array([0.5, 0.5, 0.5], dtype=float32)
        """
        x = np.asarray(pixels, np.float32)
        if self.channel_order == "bgr":
            x = x[..., ::-1]
        x = x * self.scale - self.mean
        return x if self.std is None else x / self.std

    def with_class_names(self, class_names):
        """A copy naming other classes (a new head after fine-tuning); thresholds of an old
        file never carry over (a model's Task holds them now).

        Example:
            >>> ImagePreprocessing(32).with_class_names(["cat", "dog"]).class_names
            ['cat', 'dog']
        """
        config = {**self.get_config(), "class_names": class_names}
        config.pop("thresholds", None)
        return ImagePreprocessing(**config)

    def get_config(self):
        config = super().get_config()
        config.update(
            image_size=list(self.image_size),
            resize=self.resize,
            resize_size=self.resize_size,
            interpolation=self.interpolation,
            channel_order=self.channel_order,
            scale=self.scale,
            mean=self.mean.tolist(),
            std=None if self.std is None else self.std.tolist(),
            class_names=self.class_names,
            source=self.source,
        )
        if self.thresholds is not None:  # an old file's, kept as it was read
            config["thresholds"] = self.thresholds
        return config

    def to_json(self):
        """The recipe alone as JSON, for files beside exports (TFLite, ONNX, SavedModel)."""
        config = self.get_config()
        for key in ("name", "trainable", "dtype"):
            config.pop(key, None)
        return json.dumps(config, indent=2)

    @classmethod
    def from_json(cls, text):
        """The inverse of :meth:`to_json`."""
        return cls(**json.loads(text))

    def __eq__(self, other):
        if not isinstance(other, ImagePreprocessing):
            return NotImplemented
        return self.to_json() == other.to_json()

    __hash__ = keras.layers.Layer.__hash__

    def __repr__(self):
        mean = "mean image" if self.mean.ndim == 3 else f"mean={self.mean.tolist()}"
        return (
            f"ImagePreprocessing({self.image_size[0]}x{self.image_size[1]}, {self.resize}"
            f"{f' {self.resize_size}' if self.resize == 'shorter_side' else ''}, "
            f"{self.channel_order}, scale={self.scale:.6g}, {mean}, "
            f"std={None if self.std is None else self.std.tolist()}, "
            f"{self.num_classes} classes{', multi-label' if self.multilabel else ''}, "
            f"source={self.source!r})"
        )


def imagenet(image_size=224, resize_size=256, class_names=None, source="imagenet",
             interpolation="bilinear"):
    """torchvision / timm / keras-hub style: RGB in [0, 1], ImageNet mean and std.

    Example:
        >>> [round(float(s), 3) for s in imagenet().std]
        [0.229, 0.224, 0.225]
    """
    return ImagePreprocessing(
        image_size, "shorter_side", resize_size, interpolation, "rgb", 1.0 / 255.0,
        IMAGENET_MEAN, IMAGENET_STD, class_names, source,
    )


def caffe(image_size=224, resize_size=256, class_names=None, source="keras_applications"):
    """keras.applications' ResNet50/101/152 ("caffe" mode): BGR, 0..255, mean subtracted.

    Example:
        >>> caffe().channel_order
        'bgr'
    """
    return ImagePreprocessing(
        image_size, "shorter_side", resize_size, "bilinear", "bgr", 1.0, CAFFE_MEAN_BGR,
        None, class_names, source,
    )


def tf_mode(image_size=224, resize_size=256, class_names=None, source="keras_applications_v2"):
    """keras.applications' ResNet50V2/101V2/152V2 ("tf" mode): RGB scaled to [-1, 1].

    Example:
        >>> float(tf_mode().normalize(np.full((1, 1, 3), 255))[0, 0, 0])
        1.0
    """
    return ImagePreprocessing(
        image_size, "shorter_side", resize_size, "bilinear", "rgb", 1.0 / 127.5, (1.0, 1.0, 1.0),
        None, class_names, source,
    )


def plain(image_size, channels=3, class_names=None, source="default"):
    """Resize to ``image_size``, pixels / 255, no mean: the recipe of a model built without
    weights, for ``channels`` input channels (1 grey, 3 RGB, other counts stacked).

    Example:
        >>> plain(32, channels=1).channel_order
        'grey'
    """
    check = _positive_int("channels", channels)
    order = {1: "grey", 3: "rgb"}.get(check, "stacked")
    return ImagePreprocessing(image_size, channel_order=order, mean=(0.0,) * check,
                              class_names=class_names, source=source)


def default_for(model):
    """What a model that carries no preprocessing gets: resize to its input, pixels / 255,
    classes named by index.

    Example:
        >>> default_for(keras.applications.ResNet50(weights=None)).num_classes
        1000
    """
    height, width, channels = model.input_shape[1:4]
    if height is None or width is None:
        raise InvalidArgument(
            f"Model {model.name!r} has no fixed input size ({model.input_shape}) and carries no "
            "preprocessing; attach one with keras_resnet.preprocessing.attach(model, ...)."
        )
    classes = model.output_shape[-1]
    return plain((height, width), channels, [str(i) for i in range(classes)])


def from_any_config(config):
    """An ``ImagePreprocessing`` from its config, or from the dataset description that
    keras_resnet 0.1 stored in ``.keras`` files and beside exports (``image_shape``, ``resize``,
    ``resize_size``, ``scale``, ``mean``, ``class_names``).

    Example:
        >>> from_any_config(ImagePreprocessing(32).get_config()).image_size
        (32, 32)
    """
    config = dict(config)
    if "image_shape" in config:  # the 0.1 layout
        return ImagePreprocessing(
            tuple(config["image_shape"][:2]), config["resize"], config["resize_size"],
            scale=config["scale"], mean=config["mean"], class_names=config["class_names"],
            source=config.get("name"),
        )
    for key in ("trainable", "dtype"):
        config.pop(key, None)
    return ImagePreprocessing(**config)


def of(model):
    """The :class:`ImagePreprocessing` a model carries, or None.

    Example:
        >>> of(keras_resnet.ResNet20()).image_size
        (32, 32)
    """
    found = [layer for layer in model.layers if isinstance(layer, ImagePreprocessing)]
    return found[0] if found else None


def attach(model, preprocessing):
    """``model`` carrying ``preprocessing``: its own layer replaced, or one added after the input.

    The layers are made anew and the weights copied (so each layer's ``output`` is this model's).

    Example:
        >>> model = keras_resnet.ResNet20(classes=2)
        >>> model = attach(model, of(model).with_class_names(["cat", "dog"]))
        >>> of(model).class_names
        ['cat', 'dog']
    """
    if not isinstance(preprocessing, ImagePreprocessing):
        raise InvalidType(
            "`preprocessing` must be an ImagePreprocessing; got "
            f"{type(preprocessing).__name__}."
        )
    if len(model.inputs) != 1:
        raise InvalidArgument(f"`model` must have one input; {model.name!r} has {len(model.inputs)}.")
    current = of(model)
    if current is not None:
        copy = keras.models.clone_model(model, clone_function=lambda layer: preprocessing if (
            layer is current) else type(layer).from_config(layer.get_config()))
        copy.set_weights(model.get_weights())  # new layers, each in one graph: `output` holds
        return copy
    inputs = keras.Input(shape=model.input_shape[1:], name=model.inputs[0].name)
    return keras.Model(inputs, model(preprocessing(inputs)), name=model.name)
