"""What a detection run does beyond a classification run: its recipe and defaults, the
detector it trains, the targets its loss reads, the measure it watches and the test figures
it reports.

A detection run (``task="detection"``, or data with boxes such as "digit_boxes", a COCO JSON
file or a CSV of boxes) puts RetinaNet (:func:`keras_resnet.heads.RetinaNet`: FPN P3..P7 on the
backbone's last three stages, version 1 unless ``model_options={"version": 2}``) on the
backbone ``model`` (default ResNet-18) and trains it from scratch with the recipe
"detection_from_scratch" unless told (torchvision's detection schedule, x0.1 at 16/26 and
22/26 of the run after a linear warm-up from 0.001x, with Adam at 1e-3 per 16 images instead
of its SGD at 0.01, which is made for a pretrained backbone) and RetinaNet's focal loss with
the L1 box loss (version 2: GIoU). While it trains, the detector returns one tensor per image
of every anchor's class logits, box deltas and anchor (``training_model``) against the boxes
packed as ``(x1, y1, x2, y2, class)`` rows. Its mAP needs the detections (NMS over every test
image), too slow to compute each epoch: the plateau schedule and ``best.keras`` watch the
validation loss instead.

At the end the test split runs through the detections model (post-processing inside), the
boxes go back to each image's own pixels (the batches' ``"scale"``), and
:func:`keras_resnet.coco_map.coco_map` (pycocotools' COCOeval) gives ``map``, ``map_50``,
``map_75``, ``map_small``, ``map_medium``, ``map_large``, the ``mar_*`` recalls and the AP of
each class (None where no ground truth counts, where COCOeval says -1). ``model.keras`` and
``best.keras`` are detections models carrying the Task and the data's preprocessing.

Example:
    >>> is_detection(RunConfig("resnet20", data=DataConfig("digit_boxes")))  # doctest: +SKIP
    True
"""

import dataclasses

import keras

from keras_resnet import boxes, detection_evaluation, detection_losses, tasks
from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet.data.detection import has_boxes
from keras_resnet.data.segmentation import SMALL_SIDE
from keras_resnet.errors import InvalidArgument
from keras_resnet.heads import detectors
from keras_resnet.models import parse_model_name
from keras_resnet.saving import load_model

RECIPE = "detection_from_scratch"  # a detection run trains its detector from scratch
DEFAULT_BACKBONE = "resnet18"  # a detection run's model when none is given
# Epochs and global batch of a run on the offline boxes when not given (keras_resnet.train.
# config's RUN_DEFAULTS hold the other data sets'): 2,000 training scenes of 64x64, batch 16
# (the recipe's own, so its learning rate 1e-3 as set).
RUN_DEFAULTS = {"digit_boxes": {"epochs": 8, "batch_size": 16}}
# The backbone's own defaults on the offline boxes (digits of side 8 to 32 on 64x64 scenes),
# by its family. A CIFAR net's pyramid (reductions 1 to 16) and anchors (4 to 101 pixels) fit
# the scenes as they are. An ImageNet net's P3 (reduction 8) gives a digit of side 8 one cell
# of 8x8: the run doubles the scenes to 128x128 and takes anchors of twice (not four times)
# each level's reduction, 16 to 406 pixels. On ResNet-18 after 300 steps of 16 (Adam 1e-3,
# seed 0): validation mAP 0.029 at 64x64 with anchors from 8, 0.074 at 128x128 from 16.
FAMILY_DEFAULTS = {
    "cifar": {"model_options": {"head_width": 32}},
    "imagenet": {"image_size": 128,
                 "model_options": {"head_width": 64,
                                   "anchor_sizes": boxes.anchor_sizes((4, 8, 16, 32, 64))}},
}
# The FPN's and the subnets' width on other images of side up to 64: torchvision's 256 makes
# the reduction-1 level of a CIFAR net (64x64 cells, 9 anchors each) cost seconds per batch on
# a CPU.
SMALL_HEAD_WIDTH = 32
# torchvision draws the subnets' kernels from N(0, 0.01^2) for its width 256: each conv then
# scales its input by 0.01 * sqrt(9 * 256) = 0.48. A narrower subnet keeps that gain with
# std 0.01 * sqrt(256 / width); with 0.01 itself, 32 channels give 0.17 a layer and the five
# layers of a subnet pass 1e-4 of torchvision's signal (and gradient): nothing learns.
TORCHVISION_WIDTH, TORCHVISION_STD = 256, 0.01
SUBNET_CONVS = tuple(f"{subnet}_{layer}" for subnet in ("cls", "box")
                     for layer in ("conv1", "conv2", "conv3", "conv4", "predict"))
WATCHED = "val_loss"  # what the plateau schedule and best.keras watch (no mAP per epoch)


def is_detection(config):
    """Whether ``config`` (a RunConfig) detects: its task says so, or (task "auto") its data
    has boxes.

    Example:
        >>> is_detection(RunConfig("resnet20", task="detection"))  # doctest: +SKIP
        True
    """
    if config.task == "detection":
        return True
    return config.task == "auto" and has_boxes(config.data.dataset)


def default_model(dataset, task="auto"):
    """The model a run trains when none is given: :data:`DEFAULT_BACKBONE` for a detection
    run, ResNet-20 for any other.

    Example:
        >>> default_model("digit_boxes"), default_model("digits")
        ('resnet18', 'resnet20')
    """
    detects = task == "detection" or (task == "auto" and has_boxes(dataset))
    return DEFAULT_BACKBONE if detects else "resnet20"


def check_config(config):
    """Raise where ``config`` asks a detection run for what it cannot do: boxes from data with
    a label per image, a segmentation head, fine-tuning.

    Example:
        >>> check_config(RunConfig("resnet20", data=DataConfig("digit_boxes")))  # doctest: +SKIP
    """
    boxes = has_boxes(config.data.dataset)
    if config.task == "detection" and not boxes:
        raise InvalidArgument(
            f"`task` 'detection' needs boxes; dataset {config.data.dataset!r} has none. Use "
            "'digit_boxes', a COCO JSON file or a CSV of boxes.")
    if not is_detection(config):
        return
    if config.head is not None:
        raise InvalidArgument(f"`head` {config.head!r} segments images; dataset "
                              f"{config.data.dataset!r} has boxes (a RetinaNet run). Leave "
                              "`head` None.")
    if config.fine_tune is not None:
        raise InvalidArgument(f"`weights` {config.fine_tune.weights!r}: fine-tuning a detector "
                              "is not supported yet; train it from scratch (no `weights`).")


def with_run_defaults(config):
    """``config`` with the epochs and batch size of :data:`RUN_DEFAULTS` where it gives none
    and its data is one of those data sets, and the backbone family's
    :data:`FAMILY_DEFAULTS` (input side, RetinaNet's options) where it gives none (the
    anchors of the doubled scenes only at their size).

    Example:
        >>> with_run_defaults(RunConfig(data=DataConfig("digit_boxes"))).recipe.epochs  # doctest: +SKIP
        8
    """
    defaults = RUN_DEFAULTS.get(config.data.dataset)
    if defaults is None or config.fine_tune is not None:
        return config
    recipe = config.recipe
    recipe = dataclasses.replace(
        recipe, epochs=defaults["epochs"] if recipe.epochs is None else recipe.epochs,
        batch_size=defaults["batch_size"] if recipe.batch_size is None else recipe.batch_size)
    family = FAMILY_DEFAULTS.get(_family(config.model), {})
    data, options = config.data, dict(family.get("model_options", {}))
    if "image_size" in family:
        if data.image_size is None:
            data = dataclasses.replace(data, image_size=family["image_size"])
        elif data.image_size != family["image_size"]:  # the anchors go with the doubled scenes
            options.pop("anchor_sizes", None)
    options.update(config.model_options)
    return dataclasses.replace(config, recipe=recipe, data=data, model_options=options)


def _family(model):
    """"cifar" or "imagenet" for a model name; None for a file or a model object."""
    if not isinstance(model, str) or model.endswith(".keras"):
        return None
    try:
        return parse_model_name(model)[0]
    except ValueError:
        return None


def detector(model, info, options):
    """The detections model a run trains: RetinaNet on backbone ``model`` (a name, a
    ``.keras`` backbone or model; a ``.keras`` file or model that detects already is taken as
    it is) for the data's classes, images of any size, carrying the data's preprocessing (its
    class names: :func:`named`, once trained; its own layers' outputs are what
    ``training_model`` reads, so nothing is cloned before).

    Args:
        model: the backbone, or a detector to train further.
        info: the training split's ``DetectionInfo``.
        options: RetinaNet's options (``version``, ``head_width`` (default 256;
            :data:`SMALL_HEAD_WIDTH` on images of side up to 64), ``anchor_sizes``, the
            post-processing's) and the backbone's.

    Returns:
        A detections model (``{"boxes", "scores", "classes", "num_detections"}``).

    Example:
        >>> detector("resnet20", info, {"head_width": 16})  # doctest: +SKIP
    """
    if isinstance(model, str) and model.endswith(".keras"):
        model = load_model(model, compile=False)
    if isinstance(model, keras.Model) and getattr(tasks.task_of(model), "detection", False):
        if tasks.task_of(model).classes != info.num_classes:
            raise InvalidArgument(f"`model` {model.name!r} detects {tasks.task_of(model).classes} "
                                  f"classes; the data has {info.num_classes}.")
        return detectors.detections_model(model)
    options = dict(options)
    version = options.pop("version", 1)
    if max(info.image_shape[:2]) <= SMALL_SIDE:
        options.setdefault("head_width", SMALL_HEAD_WIDTH)
    if isinstance(model, str):
        options = {"preprocessing": info.preprocessing, **options}
    net = detectors.RetinaNet(model, classes=info.num_classes, version=version,
                              input_shape=(None, None, info.image_shape[-1]), **options)
    return with_subnet_gain(net)


def subnet_std(width):
    """The std of the subnets' initial kernels at ``width``: torchvision's gain per conv.

    Example:
        >>> subnet_std(256), subnet_std(64)
        (0.01, 0.02)
    """
    return TORCHVISION_STD * (TORCHVISION_WIDTH / width) ** 0.5


def with_subnet_gain(net):
    """``net`` with its subnets' kernels drawn again from N(0, :func:`subnet_std` ^ 2) when
    its width is not torchvision's (the run's seed draws them); itself at width 256.

    Example:
        >>> net = with_subnet_gain(RetinaNet("resnet8", 3, head_width=16))  # doctest: +SKIP
    """
    width = net.get_layer("fpn_p7").filters
    if width == TORCHVISION_WIDTH:
        return net
    draw = keras.initializers.RandomNormal(stddev=subnet_std(width))
    for name in SUBNET_CONVS:
        kernel = net.get_layer(name).kernel
        kernel.assign(draw(kernel.shape, kernel.dtype))
    return net


def named(net, info):
    """Detections model ``net`` carrying the data's preprocessing and class names (RetinaNet
    names its classes "0".."K-1"); what a run saves.

    Example:
        >>> preprocessing_lib.of(named(net, info)).class_names  # doctest: +SKIP
        ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']
    """
    return preprocessing_lib.attach(net, info.preprocessing)


def version_of(net):
    """2 for a version-2 RetinaNet (GroupNorm in its subnets), else 1.

    Example:
        >>> version_of(RetinaNet("resnet8", 3, version=2, head_width=32))  # doctest: +SKIP
        2
    """
    return 2 if any(isinstance(layer, keras.layers.GroupNormalization)
                    for layer in net.layers) else 1


def loss(net):
    """RetinaNet's loss for ``net``: focal + L1 boxes (version 1), focal + GIoU (version 2).

    Example:
        >>> loss(RetinaNet("resnet8", 3, head_width=16)).box_loss  # doctest: +SKIP
        'l1'
    """
    box_loss = "giou" if version_of(net) == 2 else "l1"
    return detection_losses.RetinaNetLoss(tasks.task_of(net).classes, box_loss=box_loss)


def watched(validation):
    """The history's name of what the run watches: the validation loss, or the training loss
    of a run without validation.

    Example:
        >>> watched(True), watched(False)
        ('val_loss', 'loss')
    """
    return WATCHED if validation else WATCHED.removeprefix("val_")


def for_training(net, splits):
    """``(training model, new splits)``: ``net``'s packed raw outputs (layers shared), and the
    training and validation batches with their boxes as the loss's ``(B, M, 5)`` rows, ``M``
    each batch's most boxes (the pipeline's padding to 100 rows left out: the anchor matching
    costs in proportion to it).

    Example:
        >>> trained, splits = for_training(net, splits)  # doctest: +SKIP
        >>> trained.output_shape  # doctest: +SKIP
        (None, None, 18)
    """
    import tensorflow as tf  # the tf.data side of the run

    def packed(images, targets):
        count = tf.reduce_max(tf.reduce_sum(tf.cast(targets["classes"] >= 0, tf.int32), axis=1))
        count = tf.maximum(count, 1)  # boxes first, padding after (the pipeline's padded batch)
        return images, detection_losses.pack_targets(targets["boxes"][:, :count],
                                                     targets["classes"][:, :count])

    validation = splits.validation  # its "scale" and "image_size" are the test's business
    return detectors.training_model(net), dataclasses.replace(
        splits, train=splits.train.map(packed),
        validation=None if validation is None else validation.map(packed))


def detections_model(net, info, like):
    """The detections model of detector ``net`` saved while it trained (its packed outputs),
    with the data's class names and the post-processing settings of detections model
    ``like`` (the run's).

    Example:
        >>> best = detections_model(load_model("runs/r/best.keras"), info, net)  # doctest: +SKIP
    """
    config = like.get_layer("detections").get_config()
    settings = {key: config[key] for key in detectors.POSTPROCESS_OPTIONS if key in config}
    return named(detectors.detections_model(net, **settings), info)


def score(net, test, info):
    """``(model, figures)``: detections model ``net`` with the data's class names
    (:func:`named`), and its COCO figures on ``test`` (evaluation batches with ``"scale"`` and
    ``"image_size"``).

    Example:
        >>> model, test_figures = score(net, splits.test, splits.info)  # doctest: +SKIP
        >>> sorted(test_figures)[:2]  # doctest: +SKIP
        ['detections', 'images']
    """
    net = named(net, info)
    found, truth = detection_evaluation.predictions(net, test)
    return net, detection_evaluation.figures(found, truth, list(info.class_names))


def record(net):
    """What run.json says of the detector: ``{"detector": {name, version, head_width,
    subnet_init_std, anchor_sizes}}``.

    Example:
        >>> record(net)["detector"]["name"]  # doctest: +SKIP
        'retinanet'
    """
    anchors = [list(net.get_layer(f"anchors{level}").sizes) for level in (3, 4, 5, 6, 7)]
    width = net.get_layer("fpn_p7").filters
    return {"detector": {"name": "retinanet", "version": version_of(net), "head_width": width,
                         "subnet_init_std": subnet_std(width), "anchor_sizes": anchors}}
