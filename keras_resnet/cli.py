"""The ``keras-resnet`` command line: each subcommand parses, calls one library function, prints.

Nothing heavy is imported to build the parser, so ``--help`` answers at once; a command
imports what it needs. A user's mistake (a bad flag value, a missing or corrupt file) exits 2
with one line naming it; an unexpected error shows its traceback. ``--debug`` shows every
traceback, ``--verbose`` TensorFlow's own log lines.
"""

import argparse
import gc
import sys

from keras_resnet import commands as actions
from keras_resnet.architectures import NAMED_MODELS
from keras_resnet.commands import train_config  # noqa: F401 (the train flags' RunConfig)
from keras_resnet.devices import PRECISIONS, STRATEGIES
from keras_resnet.multilabel import TASKS

# The training recipes (keras_resnet.recipes.RECIPES; "paper" picks cifar or imagenet).
RECIPE_NAMES = ("paper", "cifar", "imagenet", "torchvision_v2", "rsb_a1", "rsb_a2", "rsb_a3",
                "torchvision_segmentation", "torchvision_detection", "detection_from_scratch")
# The segmentation heads (keras_resnet.train.config.HEADS).
HEADS = ("fcn", "deeplabv3", "deeplabv3plus")
# Stages a fine-tuning run can unfreeze from (Table 1: conv2_x ... conv5_x).
UNFREEZE_CHOICES = ("conv2", "conv3", "conv4", "conv5", "all", "none")




def _auto_or_int(text):
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer; got {text!r}") from None


def _add_data_arguments(parser):
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets data directory")
    parser.add_argument("--no-download", dest="download", action="store_false",
                        help="never download tensorflow-datasets data")


def _add_train(commands):
    train = commands.add_parser(
        "train", help="train a ResNet with the paper's recipe (default: ResNet-20 on digits), "
                      "or fine-tune pretrained weights (--weights)"
    )
    _add_model_arguments(train)
    train.add_argument("--weights", default=None,
                       help="fine-tune from these weights: 'imagenet', a weight set name "
                            "(keras-resnet weights MODEL lists them) or a file")
    train.add_argument("--unfreeze", choices=UNFREEZE_CHOICES, default="conv4",
                       help="fine-tuning: the stage the backbone trains from in phase 2")
    train.add_argument("--head-epochs", type=int, default=None,
                       help="fine-tuning: epochs of phase 1 (the new head alone); default 5")
    _add_length_arguments(train)
    _add_run_arguments(train)
    _add_output_arguments(train)
    train.set_defaults(run=actions.train)


def _add_model_arguments(train):
    train.add_argument("--model", default=None,
                       help="a model name (resnet20, resnet50, resnext50_32x4d, resnet50d, "
                            "seresnet50, resnet50v2, preact_resnet164, ...) or a .keras file; "
                            "segmentation and detection: the backbone (a CIFAR or ImageNet "
                            "net). Default resnet20; detection (box data): resnet18")
    train.add_argument("--dataset", default="digits",
                       help="'digits' (offline), a tensorflow-datasets name or an image folder")


def _add_run_arguments(train):
    """The flags of the run's task, recipe, hardware, seed and data (train and lr-find)."""
    train.add_argument("--task", choices=TASKS, default="auto",
                       help="multilabel: a sigmoid per class, binary cross-entropy, mAP/F1 and "
                            "per-class thresholds; segmentation: a class per pixel (--head), "
                            "mIoU; detection: RetinaNet, COCO mAP; auto: the dataset's "
                            "(multilabel: labels files PATH.csv, digit_canvases; segmentation: "
                            "digit_scenes, folders of images and masks; detection: "
                            "digit_boxes, COCO JSON files, CSVs of boxes)")
    train.add_argument("--recipe", choices=RECIPE_NAMES, default=None,
                       help="paper (default: imagenet for ImageNet models, cifar otherwise), or a "
                            "modern recipe: torchvision_v2, rsb_a1, rsb_a2, rsb_a3; "
                            "segmentation's default: torchvision_segmentation; detection's: "
                            "detection_from_scratch")
    train.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                       help="change one field of the recipe, e.g. --set label_smoothing=0.05 "
                            "(repeatable; the fields: keras_resnet.recipes.Recipe)")
    train.add_argument("--learning-rate", type=float, default=None)
    train.add_argument("--weight-decay", type=float, default=None,
                       help="the weight decay of every phase, fine-tuning's too: the paper's L2 "
                            "gradient coefficient, or a modern recipe's decay in its own style; "
                            "default: the model's own for the paper's recipes (models are built "
                            "with 1e-4), the recipe's for the others")
    train.add_argument("--shortcut", choices=["A", "B", "C"], default=None)
    train.add_argument("--plain", action="store_true", help="the plain counterpart (no shortcuts)")
    train.add_argument("--strategy", choices=STRATEGIES, default="auto")
    train.add_argument("--precision", choices=PRECISIONS, default="auto",
                       help="auto: on a CPU that multiplies bfloat16 natively, "
                            "mixed_bfloat16 where it trains this model at least 1.1x as fast "
                            "as float32, else float32 (timed once per CPU model, cached in "
                            "~/.keras/keras_resnet/fast_path.json; a short run with nothing "
                            "cached takes the table); elsewhere the "
                            "device's fast path (keras_resnet.devices.FAST_PATH): float32 on "
                            "CPUs, mixed_float16 on GPUs")
    train.add_argument("--jit-compile", choices=["auto", "on", "off"], default="auto",
                       help="XLA; auto: the device's fast path")
    train.add_argument("--steps-per-execution", type=_auto_or_int, default="auto")
    train.add_argument("--no-fast-path", dest="fast_path", action="store_false",
                       help="let 'auto' mean Keras' defaults instead of the measured fast path")
    train.add_argument("--seed", type=int, default=0)
    _add_segmentation_arguments(train)
    _add_detection_arguments(train)
    _add_data_arguments(train)
    _add_validation_arguments(train)
    _add_image_size_argument(train)


def _add_length_arguments(train):
    # The defaults below are keras_resnet.train.config's RUN_DEFAULTS and FINE_TUNE_DEFAULTS.
    train.add_argument("--epochs", type=int, default=None,
                       help="default by dataset, whatever the recipe: digits 40, digit_canvases "
                            "30, digit_scenes 12, digit_boxes 8, cifar10/cifar100 164 (§4.2), "
                            "imagenet2012 120, others 30; fine-tuning (--weights) 15")
    _add_batch_size_argument(train)


def _add_batch_size_argument(train):
    train.add_argument("--batch-size", type=int, default=None,
                       help="global batch size; default by dataset: digits 32, digit_canvases "
                            "64, digit_scenes 16, digit_boxes 16, cifar10/cifar100 128, "
                            "imagenet2012 256, others 128; fine-tuning (--weights) 32")


def _add_segmentation_arguments(train):
    train.add_argument("--head", choices=HEADS, default=None,
                       help="segmentation: the head on the backbone (default deeplabv3; data "
                            "with masks, e.g. --dataset digit_scenes, segments)")
    train.add_argument("--aux", action="store_true",
                       help="segmentation: torchvision's auxiliary FCN head on conv4 while "
                            "training (loss out + 0.5 aux; not in the saved model)")
    train.add_argument("--output-stride", type=int, choices=(8, 16, 32), default=None,
                       help="dilate the backbone to this stride (default: 8 for fcn and "
                            "deeplabv3, 16 for deeplabv3plus; 32 for classification)")


def _add_detection_arguments(train):
    train.add_argument("--retinanet-version", type=int, choices=(1, 2), default=None,
                       help="detection: RetinaNet 1 (torchvision's retinanet_resnet50_fpn, L1 "
                            "box loss; the default) or 2 (_v2: GroupNorm, GIoU box loss)")
    train.add_argument("--head-width", type=int, default=None, metavar="N",
                       help="detection: the channels of the FPN and the subnets (default 256; "
                            "32 on images of side up to 64, e.g. digit_boxes)")


def _add_output_arguments(train):
    train.add_argument("--output-dir", default=None, help="run directory (default runs/MODEL-DATASET)")
    train.add_argument("--no-resume", dest="resume", action="store_false",
                       help="start afresh even if the run directory holds a backup")
    train.add_argument("--no-export", dest="export", action="store_false",
                       help="skip the SavedModel and float TFLite export at the end")


def _add_validation_arguments(train):
    train.add_argument("--validation", choices=("auto", "none"), default="auto",
                       help="auto: the dataset's validation split, else a share of each class "
                            "held out of the training split (never the test split); none: "
                            "train on the whole training split (a final run)")
    train.add_argument("--validation-fraction", type=float, default=0.1,
                       help="the share of each class held out when the dataset has no "
                            "validation split (CIFAR: 0.1, the paper's 45k/5k)")


def _add_image_size_argument(train):
    train.add_argument("--image-size", type=int, default=None, metavar="N",
                       help="the model's input side N (N x N, at least 32); default by the "
                            "dataset's style: 32 for CIFAR-style data (digits, CIFAR, folders "
                            "of images of side up to 64), 224 for ImageNet-style data (larger "
                            "images; §3.4's lengths scale with N); segmentation: the images' "
                            "side up to 64, else 480. Not with --weights (fine-tuning keeps the "
                            "weights' own size)")



def _add_lr_find(commands):
    lr_find = commands.add_parser(
        "lr-find", help="learning-rate range test: train steps at an exponentially growing "
                        "rate from a run's starting weights and suggest a rate (the run is "
                        "set up as `train` would, with the same flags)")
    _add_model_arguments(lr_find)
    _add_batch_size_argument(lr_find)
    _add_run_arguments(lr_find)
    lr_find.add_argument("--start-lr", type=float, default=1e-7, help="the first step's rate")
    lr_find.add_argument("--end-lr", type=float, default=10.0, help="the last step's rate")
    lr_find.add_argument("--steps", type=int, default=100,
                         help="steps (batches) of the ramp, at least 10; it stops early once "
                              "the smoothed loss passes 4x its least")
    lr_find.add_argument("--repeats", type=int, default=3,
                         help="tests from the same starting weights, each with its own data "
                              "order (seed + repeat); the suggestions come from their mean "
                              "curve, the CSV and plot give their spread (default: 3)")
    lr_find.add_argument("--out", metavar="DIR", default=None,
                         help="where lr_find.csv and lr_find.png go (default: lr_find/ in the "
                              "run directory, runs/MODEL-DATASET/lr_find)")
    # What train's other flags would set: a run from scratch, whose directory is not written.
    lr_find.set_defaults(run=actions.lr_find, weights=None, head_epochs=None, unfreeze="conv4",
                         epochs=None, output_dir=None, resume=True, export=False)


def _add_evaluate_export_predict(commands):
    evaluate = commands.add_parser(
        "evaluate", help="top-1/top-5 error of a .keras model (a detector: COCO mAP)")
    evaluate.add_argument("model", help="a .keras file (a run directory with --interpret)")
    evaluate.add_argument("--dataset", default="digits")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--batch-size", type=int, default=128)
    evaluate.add_argument("--ten-crop", action="store_true", help="the paper's 10-crop testing")
    evaluate.add_argument("--interpret", metavar="DIR", default=None,
                          help="also write the split's mistakes to DIR: the confusion matrix, "
                               "per-class figures and most-confused pairs (each label's 2x2 "
                               "table and precision-recall curve for a multi-label model) and "
                               "the top losses with Grad-CAM")
    _add_data_arguments(evaluate)
    evaluate.set_defaults(run=actions.evaluate)

    export = commands.add_parser(
        "export", help="SavedModel (TensorFlow Serving layout), TFLite, ONNX and OpenVINO IR, "
                       "with a parity report"
    )
    export.add_argument("model", help="a run directory or a .keras file")
    export.add_argument("--format", default="saved_model,tflite",
                        help="comma-separated: saved_model, tflite, onnx, openvino "
                             "(default: %(default)s)")
    export.add_argument("--quantize", default="none",
                        help="comma-separated: none, float16, dynamic, int8, int8_full (TFLite); "
                             "none, int8 (ONNX, OpenVINO); a detector: none, float16, dynamic "
                             "(TFLite), none (ONNX, OpenVINO)")
    export.add_argument("--output-dir", default="exports")
    export.add_argument("--dataset", default=None,
                        help="data for int8 calibration and parity (default: the training dataset)")
    export.add_argument("--embeddings", action="store_true",
                        help="also write an embeddings model (pooled features) per file format")
    _add_data_arguments(export)
    export.set_defaults(run=actions.export)

    predict = commands.add_parser("predict", help="top-5 classes of images (a segmentation "
                                                  "model: a mask and an overlay per image; a "
                                                  "detector: boxes and a drawing per image)")
    predict.add_argument("model", help="a .keras file, a run directory, a SavedModel directory, "
                                       "or a .tflite, .onnx or OpenVINO .xml file")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--top-k", type=int, default=5, help="classes per image (>= 1)")
    predict.add_argument("--json", action="store_true", help="machine-readable output")
    predict.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"),
                         help="bfloat16 where the runtime (OpenVINO, TensorFlow for a SavedModel) "
                              "and the CPU have it and the export measured it to agree and to run "
                              "faster; float32 otherwise (default: auto)")
    predict.add_argument("--embeddings", metavar="OUT.npy",
                         help="write the images' embeddings (pooled features) to OUT.npy instead")
    predict.add_argument("--explain", metavar="DIR",
                         help="also write a Grad-CAM overlay PNG of each image's top class to DIR "
                              "(.keras files and run directories)")
    predict.add_argument("--stage", default=None,
                         help="the stage Grad-CAM reads (conv2 ... conv5; default: the last)")
    predict.add_argument("--output-dir", default=None,
                         help="segmentation models: where NAME_mask.png (palette PNG of class "
                              "ids) and NAME_overlay.png go (default ./masks); detectors: where "
                              "NAME_boxes.png goes (default ./boxes)")
    predict.add_argument("--score-threshold", type=float, default=0.5,
                         help="detectors: the least score of a box printed and drawn "
                              "(default 0.5)")
    predict.set_defaults(run=actions.predict)


def _add_tune(commands):
    tune = commands.add_parser(
        "tune", help="keras-tuner search over depth, width, shortcut and the recipe's settings"
    )
    tune.add_argument("--dataset", default="digits")
    tune.add_argument("--tuner", default="hyperband", help="random, hyperband or bayesian")
    tune.add_argument("--max-trials", type=int, default=10)
    tune.add_argument("--max-epochs", type=int, default=10,
                      help="epochs per trial (Hyperband: the largest budget of a trial)")
    tune.add_argument("--hyperband-factor", type=int, default=3)
    tune.add_argument("--families", default="cifar", help="cifar and/or imagenet")
    tune.add_argument("--cifar-depths", default="20,32,44,56", help="6n+2 depths")
    tune.add_argument("--imagenet-depths", default="18,34,50")
    tune.add_argument("--shortcuts", default="A,B", help="options among A, B, C (§3.3)")
    tune.add_argument("--width-multipliers", default="0.5,1")
    tune.add_argument("--zero-init-residual", default="false,true")
    tune.add_argument("--learning-rate", default="0.01:0.3", help="MIN:MAX, log scale")
    tune.add_argument("--weight-decay", default="1e-5:1e-3", help="MIN:MAX, log scale")
    tune.add_argument("--batch-sizes", default="32,64,128")
    tune.add_argument("--strategy", choices=STRATEGIES, default="auto")
    tune.add_argument("--output-dir", default=None,
                      help="default tuning/DATASET-TUNER; an existing search there continues")
    tune.add_argument("--overwrite", action="store_true", help="start the search afresh")
    tune.add_argument("--seed", type=int, default=0)
    _add_data_arguments(tune)
    tune.set_defaults(run=actions.tune)


def _add_report(commands):
    report = commands.add_parser(
        "report", help="one self-contained HTML page about a run: final metrics, curves, "
                       "interpretation, exports' parity, configuration")
    report.add_argument("run_dir", metavar="RUN", help="a run directory (keras-resnet train's)")
    report.add_argument("--output", default=None, metavar="FILE",
                        help="the HTML file written (default RUN/report.html)")
    report.add_argument("--interpret", action="store_true",
                        help="single-label classifiers: first write the test split's "
                             "interpretation (confusion matrices, top losses, per-class "
                             "figures) into RUN/interpret/ when it is missing")
    _add_data_arguments(report)
    report.set_defaults(run=actions.report)


class _Subcommands:
    """``add_subparsers()`` whose every command takes ``--debug`` and ``--verbose``."""

    def __init__(self, subparsers):
        self.subparsers = subparsers
        self.common = argparse.ArgumentParser(add_help=False)
        self.common.add_argument("--debug", action="store_true",
                                 help="show the full traceback of any error")
        self.common.add_argument("--verbose", action="store_true",
                                 help="show TensorFlow's own log lines and Keras' warnings")

    def add_parser(self, name, **kwargs):
        return self.subparsers.add_parser(name, parents=[self.common], **kwargs)


def build_parser():
    """The argument parser of ``keras-resnet`` (imports no Keras or TensorFlow)."""
    parser = argparse.ArgumentParser(
        prog="keras-resnet",
        description="ResNets of He et al. 2015 for Keras 3: summarize, train, fine-tune, tune, "
                    "export, serve.",
    )
    commands = _Subcommands(parser.add_subparsers(dest="command", required=True,
                                                  metavar="COMMAND"))
    summary = commands.add_parser(
        "summary", help="depth, parameters and multiply-adds of every model vs the paper"
    )
    summary.add_argument(
        "models", nargs="*", metavar="MODEL",
        help=f"models to list (default: the paper's {', '.join(NAMED_MODELS)}; or the family's: "
             "resnext50_32x4d, wide_resnet50_2, resnet50d, seresnet50, resnet50v2, "
             "preact_resnet164, ...)",
    )
    summary.set_defaults(run=actions.summary)
    _add_train(commands)
    _add_lr_find(commands)
    _add_evaluate_export_predict(commands)
    _add_tune(commands)
    _add_report(commands)
    serve = commands.add_parser("serve", help="TensorFlow Serving's REST API on an export directory")
    serve.add_argument("export_dir")
    serve.add_argument("--port", type=int, default=8501)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"),
                       help="bfloat16 (TensorFlow's oneDNN rewrite) where the CPU has it and the "
                            "export measured it to agree and to run faster; float32 otherwise "
                            "(default: auto)")
    serve.set_defaults(run=actions.serve)
    weights = commands.add_parser("weights", help="the pretrained weight sets of a model")
    weights.add_argument("model", nargs="?", default=None, help="e.g. resnet50 (default: all)")
    weights.set_defaults(run=actions.weights)
    return parser


def _settle_imports():
    """Import Keras and its backend, then take every object alive out of the cyclic garbage
    collector's reach (:func:`gc.freeze`), for a process the console script owns.

    TensorFlow's and Keras' modules hold about 440,000 objects that live as long as the
    process; without this, every full collection during a run walks them all again. Measured
    on a 2-core AVX-512 CPU, ``keras-resnet train --model resnet8 --epochs 2`` (the export
    included), three runs each: 20.8 s of CPU against 23.3 s through ``main(argv)``, the same
    test figures. A library call (``main(argv)`` in someone's process) leaves their collector
    alone.
    """
    import keras  # noqa: F401  (after logs.quiet(): TensorFlow reads its log settings at import)

    gc.collect()
    gc.freeze()


def main(argv=None):
    """Entry point of the ``keras-resnet`` console script.

    Example:
        >>> main(["summary", "resnet20"])  # doctest: +ELLIPSIS
        model ...
        resnet20    cifar        20    32x32x3     269,722   0.27M      0.04G       -
        0
    """
    args = build_parser().parse_args(argv)
    if argv is None:  # the console script itself: Ctrl-C and SIGTERM always stop it
        from keras_resnet import interrupts

        interrupts.install(f"keras-resnet {args.command}: interrupted.")
        if interrupts.requested():  # during start-up
            interrupts.announce()
            return 130
    try:
        if not args.verbose:
            from keras_resnet import logs

            logs.quiet()
        if argv is None:
            _settle_imports()
        args.run(args)
        return 0
    except KeyboardInterrupt:
        from keras_resnet import interrupts

        if interrupts.requested():
            interrupts.announce()
        else:
            print(f"keras-resnet {args.command}: interrupted.", file=sys.stderr)
        return 130
    except Exception as error:
        from keras_resnet.training import NaNError

        if isinstance(error, NaNError) and not args.debug:
            print(f"keras-resnet {args.command}: {error}", file=sys.stderr)
            return 1
        from keras_resnet.errors import UserError

        if args.debug or not isinstance(error, UserError):
            raise
        print(f"keras-resnet {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
