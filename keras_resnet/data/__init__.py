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
- multi-label data (several labels per image, ``task="multilabel"``, labels float32 multi-hot
  ``(batch, classes)``): a labels file ``*.csv`` of rows ``path,label;label;...[,split]``
  (paths relative to the file), or ``"digit_canvases"``, canvases of two or three digits
  each (:func:`digit_canvases`: 3000 / 500 / 1000, offline).
- segmentation data (masks as labels; :mod:`.segmentation`, also
  :func:`load_segmentation`): ``"digit_scenes"``, scenes of two or three digits with a class
  per pixel (:func:`digit_scenes`: 2000 / 250 / 500, offline), or a directory of images and
  masks (``root/<split>/{images,masks}`` or Pascal VOC's). Batches of float32 images and int32
  ``(batch, h, w)`` masks (255: ignore); training takes torchvision's segmentation transforms
  (:mod:`.augment.dense`), evaluation fits and pads each image to the model's input size.

Every ``DatasetInfo`` carries the ``ImagePreprocessing`` its images follow (what a model
trained on them carries). A dataset's own normalisation is ``image_uint8 / 255 - mean`` with
``mean`` in the same [0, 1] units: the per-pixel mean image of the training split for
CIFAR-style data (§4.2), the per-channel ImageNet mean for ImageNet-style data (§3.4; the
paper's per-pixel mean of a 224 crop is not published, and per-channel is what it reduces to
under random crops; used for every ImageNet-style dataset). No division by a standard
deviation: the paper only subtracts the mean. The mean image comes from the training split
(with a hold-out, from the images that train; for "train45k"/"val5k" from the whole "train"
split: the 5k held-out images add to it, a negligible leak); for tfds and folders it is computed in one
pass and cached as ``.npy`` under ``data_dir/keras_resnet`` or ``$KERAS_HOME/keras_resnet``
(default ``~/.keras/keras_resnet``).

Data without a validation split get one held out of the training split
(``load(..., holdout=Holdout())``, :mod:`.holdout`: 10% of each class, the same images for
every run; CIFAR: the paper's 45k/5k). ``keras-resnet train`` never validates on the test
split.

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

Layout: ``sources/`` (one module per source, behind one registry), ``augment/`` (the paper's,
the modern recipes' and the mixing augmentations), ``images.py`` (TF image ops and the
evaluation preprocessing), ``means.py`` (the mean image cache), ``info.py``
(:class:`DatasetInfo`) and ``pipeline.py`` (:func:`load`: the ``tf.data`` plumbing).
"""

from keras_resnet.extras import require

require("tensorflow", "keras_resnet.data (tf.data pipelines)")

from keras_resnet.data.images import (  # noqa: E402
    CIFAR_SIZE,
    IMAGENET_CROP,
    IMAGENET_EVAL_SIDE,
    IMAGENET_MEAN,
    SCALE,
    average_crops,
    center_crop,
    normalize,
    preprocess,
    resize_shorter_side,
    resize_to_uint8,
    ten_crop,
    to_model_channels,
)
from keras_resnet.data.augment.paper import (  # noqa: E402
    CIFAR_PADDING,
    IMAGENET_EIGENVALUES,
    IMAGENET_EIGENVECTORS,
    IMAGENET_TRAIN_SIDES,
    augment_image,
    cifar_augment,
    imagenet_augment,
    imagenet_sides,
    pca_lighting,
)
from keras_resnet.data.holdout import DEFAULT_FRACTION, Holdout  # noqa: E402
from keras_resnet.data.info import DatasetInfo  # noqa: E402
from keras_resnet.data.pipeline import (  # noqa: E402
    AUGMENTATIONS,
    LABEL_FORMATS,
    TASKS,
    TRAINING_SPLITS,
    as_numpy,
    label_format,
    load,
)
from keras_resnet.data.segmentation import SegmentationInfo, has_masks, load_segmentation  # noqa: E402
from keras_resnet.data.sources import (  # noqa: E402
    IGNORE_LABEL,
    IMAGE_EXTENSIONS,
    SPLIT_ALIASES,
    MissingSplit,
    STANDARD_SPLITS,
    VOC_CLASSES,
    digit_canvases,
    digit_scenes,
    tfds_split,
)

__all__ = [
    "AUGMENTATIONS", "CIFAR_PADDING", "CIFAR_SIZE", "DEFAULT_FRACTION", "DatasetInfo", "Holdout",
    "IGNORE_LABEL", "IMAGENET_CROP", "IMAGENET_EIGENVALUES", "IMAGENET_EIGENVECTORS",
    "IMAGENET_EVAL_SIDE", "IMAGENET_MEAN", "IMAGENET_TRAIN_SIDES", "IMAGE_EXTENSIONS",
    "LABEL_FORMATS", "MissingSplit", "SCALE", "SPLIT_ALIASES", "STANDARD_SPLITS",
    "SegmentationInfo", "TASKS", "TRAINING_SPLITS", "VOC_CLASSES", "as_numpy", "augment_image",
    "average_crops", "center_crop", "cifar_augment", "digit_canvases", "digit_scenes",
    "has_masks", "imagenet_augment", "imagenet_sides", "label_format", "load", "load_segmentation",
    "normalize",
    "pca_lighting", "preprocess", "resize_shorter_side", "resize_to_uint8", "ten_crop",
    "tfds_split", "to_model_channels",
]
