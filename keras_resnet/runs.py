"""End-to-end runs: what ``keras-resnet train`` and ``keras-resnet train --weights`` do.

:func:`train` trains a model from scratch with the paper's recipe and callbacks;
:func:`fine_tune` starts from pretrained weights, trains a new classifier with the backbone
frozen, then unfreezes the backbone from a named stage at a lower learning rate. Both take
today's keyword arguments, build a :class:`~keras_resnet.train.config.RunConfig` from them
and run it with ``keras_resnet.train.flow`` (each field is documented there, once). Both write
a run directory (``model.keras``, ``best.keras``, ``history.csv``, ``training_curves.png``,
``logs/``, ``run.json``, ``export/``), resume after a kill from ``backup/``, and finish their
saving and export on a rerun without training again when they were killed after the last
epoch.

Example:
    >>> result = train("resnet20", "digits", run_dir="runs/r20", epochs=30)  # doctest: +SKIP
    >>> result["test"]["top1"] > 0.9  # doctest: +SKIP
    True
"""

from keras_resnet.train import detection, flow
from keras_resnet.train.build import set_trainable  # noqa: F401  (re-exported, as before)
from keras_resnet.train.config import (  # noqa: F401
    FINE_TUNE_DEFAULTS,
    OTHER_RUN_DEFAULTS,
    RUN_DEFAULTS,
    UNFREEZE,
    RunConfig,
)
from keras_resnet.train.results import history_rows, plot_history  # noqa: F401
from keras_resnet.train.setup import RUN_FILES  # noqa: F401


def train(
    model=None,
    dataset="digits",
    *,
    run_dir=None,
    epochs=None,
    batch_size=None,
    recipe=None,
    recipe_overrides=None,
    learning_rate=None,
    weight_decay=None,
    strategy="auto",
    precision="auto",
    jit_compile="auto",
    steps_per_execution="auto",
    fast_path=True,
    resume=True,
    data_dir=None,
    download=True,
    validation="auto",
    validation_fraction=0.1,
    image_size=None,
    seed=0,
    model_options=None,
    export=True,
    verbose="auto",
    task="auto",
    head=None,
):
    """Train a ResNet with the paper's recipe and callbacks; everything lands in ``run_dir``.

    On segmentation data ("digit_scenes", a folder of images and masks; or ``task=
    "segmentation"``) it trains ``head`` ("fcn", "deeplabv3" by default, "deeplabv3plus") on
    the backbone ``model`` with torchvision's segmentation recipe unless told, and reports the
    test split's mIoU, pixel accuracy and IoU per class. On detection data ("digit_boxes", a
    COCO JSON file, a CSV of boxes; or ``task="detection"``) it trains RetinaNet on the
    backbone ``model`` (``model_options``: ``version`` 1 or 2, ``head_width``) with
    torchvision's detection recipe unless told, and reports the test split's COCO mAP
    (``keras_resnet.train.detection``).

    Args:
        model: a name ("resnet20", "resnet50", ...), a ``.keras`` path or a ``keras.Model``;
            None: "resnet20", or "resnet18" for a detection run.
        dataset: "digits", a tensorflow-datasets name or an image-folder path.
        image_size: the side of the model's square input (at least 32); None: the data set's
            default: 32 for CIFAR-style data (images of side up to 64), 224 for ImageNet-style
            data (§3.4's lengths scale with it); segmentation data: the images' side up to
            64, else 480. Fine-tuning takes the weights' own size.
        Other arguments: the fields of :class:`~keras_resnet.train.config.RunConfig` and its
            groups, by name (``DataConfig``: data_dir, download, validation,
            validation_fraction; ``RecipeConfig``: recipe,
            recipe_overrides, epochs, batch_size, learning_rate, weight_decay;
            ``HardwareConfig``: strategy, precision, jit_compile, steps_per_execution,
            fast_path; ``OutputConfig``: run_dir, resume, export, verbose; and task, head,
            seed, model_options), where each is documented.

    Returns:
        dict: the run's configuration and final test metrics (also written to run.json).

    Example:
        >>> result = train("resnet8", "digits", run_dir="runs/r8", epochs=1, export=False, verbose=0)
        >>> result["epochs"]
        1
    """
    options = {key: value for key, value in locals().items() if key not in ("model", "dataset")}
    if model is None:
        model = detection.default_model(dataset, task)
    return flow.run(RunConfig.from_options(model, dataset, **options))


def fine_tune(
    model="resnet50",
    dataset="digits",
    *,
    weights="imagenet",
    run_dir=None,
    epochs=None,
    head_epochs=None,
    unfreeze="conv4",
    train_bn=False,
    batch_size=None,
    learning_rate=None,
    fine_tune_learning_rate=None,
    weight_decay=None,
    strategy="auto",
    precision="auto",
    jit_compile="auto",
    steps_per_execution="auto",
    fast_path=True,
    resume=True,
    data_dir=None,
    download=True,
    validation="auto",
    validation_fraction=0.1,
    seed=0,
    model_options=None,
    export=True,
    verbose="auto",
    task="auto",
    recipe="imagenet",
    recipe_overrides=None,
):
    """Fine-tune pretrained weights on a dataset; the run directory is :func:`train`'s.

    Phase 1 (``head_epochs``): a new classifier for the dataset's classes trains on the frozen
    backbone (BatchNormalization in inference mode). Phase 2 (the rest of ``epochs``): the
    backbone trains too from stage ``unfreeze`` on, at ``fine_tune_learning_rate``. Images
    follow the weights' own preprocessing (size, resize, mean and std), so there is nothing to
    restate. SGD with momentum 0.9 and the paper's weight decay, ReduceLROnPlateau (factor 0.1).

    Args:
        model: a model name ("resnet50", ...); ignored when ``weights`` is a ``.keras`` file.
        dataset: an image folder, "digits" or a tensorflow-datasets name.
        weights, head_epochs, unfreeze, train_bn, fine_tune_learning_rate: the fields of
            :class:`~keras_resnet.train.config.FineTuneConfig`.
        epochs, learning_rate: epochs in all (default 15), and phase 1's learning rate
            (default the ImageNet recipe's 0.1 per 256 images).
        recipe, recipe_overrides: the training recipe of both phases (default the paper's
            ImageNet one); FixRes' smaller training crops need a model of any input size and
            are refused here (``train_size_fraction=1``).
        Other arguments: as :func:`train`.

    Returns:
        dict: the run's configuration and final test metrics (also in run.json).

    Example:
        >>> fine_tune("resnet18", "path/to/images", run_dir="runs/pets", unfreeze="conv4")  # doctest: +SKIP
    """
    options = {key: value for key, value in locals().items() if key not in ("model", "dataset")}
    if model is None:
        model = detection.default_model(dataset, task)
    return flow.run(RunConfig.from_options(model, dataset, **options))
