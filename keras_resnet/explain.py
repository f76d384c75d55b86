"""Where a keras_resnet model looks: Grad-CAM (Selvaraju et al. 2017) and its overlays.

Grad-CAM weighs each channel ``k`` of a stage's output ``A`` by the spatial mean of the
gradient of the class score ``y^c`` (before the softmax or sigmoid, §3 of the paper) and keeps
the positive part of the weighted sum:

    alpha_k = mean_ij d y^c / d A_kij,        map = ReLU(sum_k alpha_k A_k)

The default layer is the output of the last stage (``conv5`` of an ImageNet net, ``conv4`` of
a §4.2 CIFAR net, after the final BN-ReLU of a pre-activation net): the layer the paper uses,
and the one keras.io's recipe calls ``conv5_block3_out`` on keras.applications' ResNet-50. Any
stage can be named (``"conv4"``, or keras-hub's ``"P4"``). The map is upsampled to the model's
input size and scaled to [0, 1]; :func:`overlay` blends it with the image as the model saw it
(or the original photo, :func:`explain_files`).

Gradients come from the backend in use (TensorFlow, JAX or PyTorch; :func:`grad_cam` and
:func:`overlay` need no TensorFlow); the model can be built here, loaded from a ``.keras``
file, fine-tuned with a new head, of any variant, or mixed precision.

Example:
    >>> model = keras_resnet.ResNet20()
    >>> cam = grad_cam(model, np.zeros((2, 32, 32, 3), np.float32))
    >>> cam.heatmaps.shape, cam.stage
    ((2, 32, 32), 'conv4')
"""

import dataclasses
import os

import keras
import numpy as np

from keras_resnet.errors import InvalidArgument, InvalidType
from keras_resnet.features import OUTPUT_ACTIVATIONS, stage_scores  # noqa: F401 (re-exported)
from keras_resnet.saving import atomic_path


@dataclasses.dataclass
class GradCAM:
    """What :func:`grad_cam` returns for a batch of ``n`` images.

    heatmaps: ``(n, height, width)`` float32 in [0, 1] at the model's input size (all zeros
        where no position raises the class score); maps: ``(n, h, w)`` the unscaled maps at the
        stage's resolution; class_indices: ``(n,)`` the class each map explains; scores:
        ``(n,)`` the model's output for that class; stage and layer: where the maps were read.
    """

    heatmaps: np.ndarray
    maps: np.ndarray
    class_indices: np.ndarray
    scores: np.ndarray
    stage: str
    layer: str


def _gradient(function, values):
    """d sum(function(values)) / d values, by the running backend's autodiff."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        values = tf.convert_to_tensor(values)
        with tf.GradientTape() as tape:
            tape.watch(values)
            total = function(values)
        return tape.gradient(total, values)
    if backend == "jax":
        import jax

        return jax.grad(lambda v: function(v))(values)
    if backend == "torch":
        import torch

        values = torch.as_tensor(values).detach().requires_grad_(True)
        function(values).backward()
        return values.grad
    raise InvalidArgument(
        f"Grad-CAM needs gradients: the {backend!r} backend has none (use tensorflow, jax or torch)."
    )


def _class_indices(class_index, probabilities):
    n, classes = probabilities.shape
    if class_index is None:
        return np.argmax(probabilities, axis=-1)
    indices = np.asarray(class_index)
    if np.ndim(class_index) == 0:
        indices = np.broadcast_to(indices, (n,))
    if (indices.shape != (n,) or not np.issubdtype(indices.dtype, np.integer)
            or np.any(indices < 0) or np.any(indices >= classes)):
        raise InvalidArgument(
            f"`class_index` must be None (the top class), a class id in 0..{classes - 1}, or one "
            f"per image ({n}); got {class_index!r}."
        )
    return indices.astype(np.int64)


def _upsample(maps, size):
    resized = keras.ops.image.resize(keras.ops.convert_to_tensor(maps[..., None]), size,
                                     interpolation="bilinear", antialias=False)
    return keras.ops.convert_to_numpy(resized)[..., 0]


def _scaled(maps):
    peaks = maps.max(axis=(1, 2), keepdims=True)
    return np.where(peaks > 0, maps / np.where(peaks > 0, peaks, 1.0), 0.0).astype(np.float32)


def grad_cam(model, images, class_index=None, stage=None):
    """Grad-CAM maps of ``model`` for preprocessed ``images``.

    Args:
        model: a keras_resnet model (any depth, variant, head or dtype policy) or one built on
            it, ending in its Dense classifier.
        images: float32 ``(n, height, width, channels)``, preprocessed as
            ``keras_resnet.preprocessing.of(model)`` says.
        class_index: the class to explain: None (each image's top class), one id, or one id
            per image.
        stage: the stage whose output is weighed ("conv5", "P5", ...); default the last.

    Returns:
        A :class:`GradCAM`.

    Example:
        >>> cam = grad_cam(model, batch, class_index=3, stage="conv3")  # doctest: +SKIP
    """
    if not isinstance(model, keras.Model):
        raise InvalidType(f"`model` must be a keras.Model; got {type(model).__name__}.")
    images = np.asarray(images, np.float32)
    expected = tuple(model.input_shape[1:])  # a None side takes any size
    if images.ndim != 4 or any(side is not None and side != given for side, given in zip(expected, images.shape[1:])):
        raise InvalidArgument(
            f"`images` must be (n, {', '.join(map(str, expected))}) preprocessed "
            f"images for this model; got shape {images.shape}."
        )
    chosen, features, scores = stage_scores(model, stage)
    probabilities = keras.ops.convert_to_numpy(model(images, training=False)).astype(np.float32)
    indices = _class_indices(class_index, probabilities)
    activations = features(images, training=False)
    selected = keras.ops.one_hot(indices, probabilities.shape[-1], dtype="float32")
    gradients = _gradient(lambda values: keras.ops.sum(scores(values) * selected), activations)
    activations = keras.ops.convert_to_numpy(activations).astype(np.float32)
    gradients = keras.ops.convert_to_numpy(gradients).astype(np.float32)
    weights = gradients.mean(axis=(1, 2), keepdims=True)  # alpha_k, per image
    maps = np.maximum((weights * activations).sum(axis=-1), 0.0)
    return GradCAM(
        heatmaps=_scaled(_upsample(maps, images.shape[1:3])), maps=maps, class_indices=indices,
        scores=probabilities[np.arange(len(indices)), indices], stage=chosen["name"],
        layer=chosen["layer"],
    )


def _colormap(heatmap):
    """RGB in 0..1 for a heatmap in 0..1: matplotlib's "jet" (blue cold, red hot)."""
    import matplotlib

    return matplotlib.colormaps["jet"](np.clip(heatmap, 0.0, 1.0))[..., :3]


def overlay(image, heatmap, alpha=0.4):
    """``image`` with ``heatmap`` drawn over it in colour, as a PNG-ready uint8 RGB array.

    Args:
        image: ``(h, w, 3)``, ``(h, w, 1)`` or ``(h, w)`` pixels in 0..255.
        heatmap: ``(H, W)`` in [0, 1], any size (resized to the image, bilinear).
        alpha: the heatmap's weight in the blend, in [0, 1].

    Returns:
        uint8 ``(h, w, 3)``.

    Example:
        >>> overlay(np.zeros((64, 64, 3)), cam.heatmaps[0]).shape  # doctest: +SKIP
        (64, 64, 3)
    """
    image = np.asarray(image, np.float32)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise InvalidArgument(f"`image` must be (h, w), (h, w, 1) or (h, w, 3); got shape {image.shape}.")
    heatmap = np.asarray(heatmap, np.float32)
    if heatmap.ndim != 2:
        raise InvalidArgument(f"`heatmap` must be (height, width); got shape {heatmap.shape}.")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise InvalidArgument(f"`alpha` must be a number in [0, 1]; got {alpha!r}.")
    if heatmap.shape != image.shape[:2]:
        heatmap = _upsample(heatmap[None], image.shape[:2])[0]
    blended = (1 - alpha) * image + alpha * 255.0 * _colormap(heatmap)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def heatmap_on_image(heatmap, image_shape, preprocessing):
    """A heatmap at the model's input size placed on the original image: resized back for the
    "direct" policy; for "shorter_side", resized and put where the centre crop came from (0
    outside it).

    Args:
        heatmap: ``(height, width)`` at the model's input size.
        image_shape: the original image's ``(h, w, ...)``.
        preprocessing: the model's ``ImagePreprocessing``.

    Returns:
        float32 ``(h, w)``.

    Example:
        >>> heatmap_on_image(cam.heatmaps[0], photo.shape, keras_resnet.preprocessing.of(model))  # doctest: +SKIP
    """
    height, width = image_shape[:2]
    if preprocessing.resize != "shorter_side":
        return _upsample(heatmap[None], (height, width))[0]
    ratio = preprocessing.resize_size / min(height, width)
    resized = (max(round(height * ratio), preprocessing.resize_size),
               max(round(width * ratio), preprocessing.resize_size))
    crop = preprocessing.image_size
    top, left = ((resized[0] - crop[0]) // 2) / ratio, ((resized[1] - crop[1]) // 2) / ratio
    box = (int(round(top)), int(round(left)), max(1, round(crop[0] / ratio)), max(1, round(crop[1] / ratio)))
    placed = np.zeros((height, width), np.float32)
    piece = _upsample(heatmap[None], box[2:])[0]
    rows, cols = min(box[2], height - box[0]), min(box[3], width - box[1])
    placed[box[0]:box[0] + rows, box[1]:box[1] + cols] = piece[:rows, :cols]
    return placed


def _write_png(path, pixels):
    from PIL import Image

    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")


def check_explainable(model_path):
    """``model_path`` if Grad-CAM can read it (a ``.keras`` file or a run directory), else a
    one-line error.

    Example:
        >>> check_explainable("runs/resnet20-digits")  # doctest: +SKIP
        'runs/resnet20-digits'
    """
    path = os.fspath(model_path)
    is_run = os.path.isdir(path) and os.path.exists(os.path.join(path, "model.keras"))
    if not (is_run or (path.endswith(".keras") and not os.path.isdir(path))):
        raise InvalidArgument(
            f"`model` {path!r}: Grad-CAM needs the Keras model, a .keras file or a run "
            "directory (an export has no gradients)."
        )
    return path


def explain_files(model_path, image_paths, out_dir, class_index=None, stage=None, alpha=0.4):
    """Write a Grad-CAM overlay PNG of each image file, on the original photo.

    Args:
        model_path: a ``.keras`` file or a run directory (gradients need the Keras model).
        image_paths: JPEG/PNG/GIF/BMP files.
        out_dir: where ``NAME_gradcam.png`` is written for each ``NAME.EXT`` (created; a name
            met twice gets ``NAME_2_gradcam.png``).
        class_index, stage: as in :func:`grad_cam`.
        alpha: as in :func:`overlay`.

    Returns:
        list of ``{"image", "overlay", "class_index", "label", "score", "stage"}``, in order.

    Example:
        >>> explain_files("runs/resnet20-digits", ["digit.png"], "explained")[0]["overlay"]  # doctest: +SKIP
        'explained/digit_gradcam.png'
    """
    from keras_resnet import data  # TensorFlow's image ops, as the model's pipeline
    from keras_resnet.export import read_image, resolve_model

    path = check_explainable(model_path)
    images = [read_image(image_path) for image_path in image_paths]
    model, preprocessing = resolve_model(path)
    batch = np.concatenate([np.asarray(data.preprocess(image[None], preprocessing)) for image in images])
    cam = grad_cam(model, batch, class_index=class_index, stage=stage)
    class_names = preprocessing.class_names or [str(i) for i in range(model.output_shape[-1])]
    os.makedirs(out_dir, exist_ok=True)
    results, written = [], set()
    for image_path, image, heatmap, index, score in zip(
            image_paths, images, cam.heatmaps, cam.class_indices, cam.scores):
        name = stem = os.path.splitext(os.path.basename(image_path))[0]
        copy = 1
        while name in written:  # the same file name in two folders: NAME_2, NAME_3, ...
            copy += 1
            name = f"{stem}_{copy}"
        written.add(name)
        out_path = os.path.join(out_dir, f"{name}_gradcam.png")
        _write_png(out_path, overlay(image, heatmap_on_image(heatmap, image.shape, preprocessing), alpha))
        results.append({"image": image_path, "overlay": out_path, "class_index": int(index),
                        "label": class_names[index], "score": float(score), "stage": cam.stage})
    return results


__all__ = ["GradCAM", "check_explainable", "explain_files", "grad_cam", "heatmap_on_image", "overlay"]
