"""The ``keras-resnet`` command line: each subcommand parses, calls one library function, prints.

Nothing heavy is imported to build the parser, so ``--help`` answers at once; a command
imports what it needs. A user's mistake (a bad flag value, a missing or corrupt file) exits 2
with one line naming it; an unexpected error shows its traceback. ``--debug`` shows every
traceback, ``--verbose`` TensorFlow's own log lines.
"""

import argparse
import os
import sys

from keras_resnet.architectures import NAMED_MODELS
from keras_resnet.devices import PRECISIONS, STRATEGIES
from keras_resnet.errors import InvalidArgument
from keras_resnet.multilabel import TASKS

# The training recipes (keras_resnet.recipes.RECIPES; "paper" picks cifar or imagenet).
RECIPE_NAMES = ("paper", "cifar", "imagenet", "torchvision_v2", "rsb_a1", "rsb_a2", "rsb_a3")
# Stages a fine-tuning run can unfreeze from (Table 1: conv2_x ... conv5_x).
UNFREEZE_CHOICES = ("conv2", "conv3", "conv4", "conv5", "all", "none")


def _summary(args):
    from keras_resnet.summary import summary_table

    from keras_resnet.models import MODEL_NAMES

    unknown = [name for name in args.models if name not in MODEL_NAMES]
    if unknown:
        raise InvalidArgument(f"unknown model {unknown[0]!r}; choose from {', '.join(MODEL_NAMES)}")
    print(summary_table(args.models or None))


def _print_run(result):
    exported = result.get("export") or {}
    if exported.get("saved_model"):
        print(f"SavedModel: {exported['saved_model']}")
    if exported.get("parity"):
        from keras_resnet.export import format_parity

        print(format_parity(exported["parity"]))
    test = result["test"]
    if "mAP" in test:
        print(f"test mAP {test['mAP']:.4f}, F1 {test['f1_macro']:.4f} (macro) / "
              f"{test['f1_micro']:.4f} (micro) at thresholds chosen on the "
              f"{result['thresholds_split']} split")
    else:
        print(f"test top-1 accuracy {test['top1']:.4f} (error {1 - test['top1']:.2%}), "
              f"top-5 accuracy {test['top5']:.4f} (error {1 - test['top5']:.2%})")
    print(f"run directory: {result['run_dir']}")


def train_config(args):
    """The :class:`~keras_resnet.train.config.RunConfig` of parsed ``train`` flags: the one
    place the command line's flags become a run (``--weights`` makes it a fine-tuning run).

    Args:
        args: ``build_parser().parse_args(["train", ...])``.

    Returns:
        The RunConfig; ``keras_resnet.runs.train``/``fine_tune`` build the same from the same
        options.

    Example:
        >>> train_config(build_parser().parse_args(["train", "--epochs", "2"])).recipe.epochs
        2
    """
    from keras_resnet.recipes import parse_overrides
    from keras_resnet.train.config import (DataConfig, FineTuneConfig, HardwareConfig,
                                           OutputConfig, RecipeConfig, RunConfig)

    options = {}
    if args.shortcut:
        options["shortcut"] = args.shortcut
    if args.plain:
        options["residual"] = False
    recipe = args.recipe
    if args.weights and recipe in (None, "paper"):
        recipe = "imagenet"  # the paper's recipe of a pretrained (ImageNet) backbone
    fine_tune = None
    if args.weights:
        fine_tune = FineTuneConfig(weights=args.weights, head_epochs=args.head_epochs,
                                   unfreeze=args.unfreeze)
    return RunConfig(
        model=args.model, task=args.task, seed=args.seed, model_options=options,
        data=DataConfig(args.dataset, data_dir=args.data_dir, download=args.download),
        recipe=RecipeConfig(recipe, parse_overrides(args.set), epochs=args.epochs,
                            batch_size=args.batch_size, learning_rate=args.learning_rate,
                            weight_decay=args.weight_decay),
        hardware=HardwareConfig(
            args.strategy, args.precision,
            jit_compile={"auto": "auto", "on": True, "off": False}[args.jit_compile],
            steps_per_execution=args.steps_per_execution, fast_path=args.fast_path),
        output=OutputConfig(args.output_dir, resume=args.resume, export=args.export),
        fine_tune=fine_tune,
    )


def _train(args):
    from keras_resnet.train import flow

    _print_run(flow.run(train_config(args)))


def _evaluate(args):
    from keras_resnet.evaluation import evaluate

    metrics = evaluate(args.model, args.dataset, args.split, batch_size=args.batch_size,
                       ten_crop=args.ten_crop, data_dir=args.data_dir, download=args.download)
    crops = " (10-crop)" if args.ten_crop else ""
    if "mAP" in metrics:
        print(f"{args.dataset} {args.split}: mAP {metrics['mAP']:.4f}, F1 {metrics['f1_macro']:.4f} "
              f"(macro) / {metrics['f1_micro']:.4f} (micro) at the model's thresholds")
        return
    print(f"{args.dataset} {args.split}{crops}: top-1 error {1 - metrics['top1']:.2%}, "
          f"top-5 error {1 - metrics['top5']:.2%}")


def _export(args):
    from keras_resnet.export import export_run, format_parity

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    quantizations = [None if q.strip() in ("", "none", "float32") else q.strip()
                     for q in args.quantize.split(",")]
    result = export_run(args.model, args.output_dir, formats, quantizations,
                        dataset=args.dataset, data_dir=args.data_dir, embeddings=args.embeddings)
    if result["saved_model"]:
        print(f"SavedModel: {result['saved_model']}")
    if result["parity"]:
        print(format_parity(result["parity"]))
    written = [path for fmt in ("tflite", "onnx", "openvino") for path in result[fmt]]
    embedders = [path for path in written if os.path.basename(path).startswith("embeddings_")]
    if embedders:
        print("Embeddings: " + ", ".join(embedders))
    checked = {row["file"] for row in result["parity"]}  # file names
    unchecked = [path for path in result["tflite"]
                 if os.path.basename(path) not in checked and path not in embedders]
    if unchecked:  # LiteRT, which runs .tflite files, is an extra
        print("TFLite: " + ", ".join(unchecked) + " (install keras3-resnet[litert] for their "
              "parity rows)")


def _predict(args):
    import json

    from keras_resnet.export import predict_files

    if args.stage and not args.explain:
        raise InvalidArgument("`--stage` chooses the layer Grad-CAM reads; give `--explain DIR` with it.")
    if args.embeddings and args.explain:
        raise InvalidArgument("`--explain` explains predictions; it does not go with `--embeddings`.")
    if args.embeddings:
        from keras_resnet.saving import atomic_path

        import numpy as np

        from keras_resnet.export.formats import check_writable

        if not args.embeddings.endswith(".npy"):
            raise InvalidArgument(f"`--embeddings` must name a .npy file; got {args.embeddings!r}.")
        check_writable("--embeddings", os.path.dirname(os.path.abspath(args.embeddings)))
        embeddings = predict_files(args.model, args.images, embeddings=True,
                                   precision=args.precision)
        with atomic_path(args.embeddings, suffix=".npy") as tmp:
            np.save(tmp, embeddings)
        print(f"Embeddings {embeddings.shape[0]}x{embeddings.shape[1]} (one row per image, in "
              f"order): {args.embeddings}")
        return
    if args.explain:
        from keras_resnet.export.formats import check_writable

        from keras_resnet.explain import check_explainable

        check_explainable(args.model)
        check_writable("--explain", os.path.abspath(args.explain))
    results = predict_files(args.model, args.images, top_k=args.top_k, precision=args.precision)
    if args.explain:
        from keras_resnet.explain import explain_files

        for result, explained in zip(results, explain_files(args.model, args.images, args.explain,
                                                            stage=args.stage)):
            result["explanation"] = {key: explained[key] for key in ("overlay", "label", "stage")}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for result in results:
        print(result["image"])
        if "labels" in result:  # a multi-label model
            found = ", ".join(f"{e['label']} ({e['score']:.4f})" for e in result["labels"])
            print(f"  labels over their thresholds: {found or 'none'}")
        for entry in result["top_k"]:
            print(f"  {entry['score']:.4f}  {entry['label']}")
        if "explanation" in result:
            explanation = result["explanation"]
            print(f"  Grad-CAM of {explanation['label']!r} at {explanation['stage']}: "
                  f"{explanation['overlay']}")


def _serve(args):
    from keras_resnet.serving import serve

    serve(args.export_dir, host=args.host, port=args.port)


def _weights(args):
    from keras_resnet.weights import format_table

    print(format_table(args.model))


def _values(flag, text, convert):
    """``"20,32"`` -> (20, 32); names the flag when a value does not parse."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    try:
        return tuple(convert(item) for item in items)
    except ValueError:
        raise InvalidArgument(f"`{flag}` must be a comma-separated list of {convert.__name__} values; "
                         f"got {text!r}.") from None


def _range(flag, text):
    """``"0.01:0.3"`` -> (0.01, 0.3); a single number fixes the value."""
    parts = text.split(":")
    try:
        values = tuple(float(part) for part in parts)
    except ValueError:
        values = ()
    if len(values) not in (1, 2):
        raise InvalidArgument(f"`{flag}` must be MIN:MAX (or one number); got {text!r}.")
    return values if len(values) == 2 else values * 2


def _flag_value(text):
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise InvalidArgument(text)
    return lowered == "true"


_flag_value.__name__ = "true/false"


def _tune(args):
    from keras_resnet.tuning import SearchSpace, tune

    space = SearchSpace(
        families=_values("--families", args.families, str),
        cifar_depths=_values("--cifar-depths", args.cifar_depths, int),
        imagenet_depths=_values("--imagenet-depths", args.imagenet_depths, int),
        shortcuts=_values("--shortcuts", args.shortcuts, str),
        width_multipliers=_values("--width-multipliers", args.width_multipliers, float),
        zero_init_residual=_values("--zero-init-residual", args.zero_init_residual, _flag_value),
        learning_rate=_range("--learning-rate", args.learning_rate),
        weight_decay=_range("--weight-decay", args.weight_decay),
        batch_sizes=_values("--batch-sizes", args.batch_sizes, int),
    )
    result = tune(
        args.dataset, args.tuner, output_dir=args.output_dir, max_trials=args.max_trials,
        max_epochs=args.max_epochs, hyperband_factor=args.hyperband_factor, search_space=space,
        seed=args.seed, strategy=args.strategy, overwrite=args.overwrite,
        data_dir=args.data_dir, download=args.download, verbose=2,
    )
    with open(result["results_md"]) as f:
        print(f.read(), end="")
    print(f"results: {result['results_csv']}, {result['results_md']}")
    print(f"best model: {result['best_model']} (val_top1 {result['best']['val_top1']:.4f})")


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
    train.add_argument("--model", default="resnet20",
                       help="a model name (resnet20, resnet50, resnext50_32x4d, resnet50d, "
                            "seresnet50, resnet50v2, preact_resnet164, ...) or a .keras file")
    train.add_argument("--dataset", default="digits",
                       help="'digits' (offline), a tensorflow-datasets name or an image folder")
    train.add_argument("--weights", default=None,
                       help="fine-tune from these weights: 'imagenet', a weight set name "
                            "(keras-resnet weights MODEL lists them) or a file")
    train.add_argument("--unfreeze", choices=UNFREEZE_CHOICES, default="conv4",
                       help="fine-tuning: the stage the backbone trains from in phase 2")
    train.add_argument("--head-epochs", type=int, default=None,
                       help="fine-tuning: epochs of phase 1 (the new head alone)")
    train.add_argument("--epochs", type=int, default=None,
                       help="default by dataset: digits 40, cifar10/100 164 (§4.2), others 30")
    train.add_argument("--batch-size", type=int, default=None,
                       help="global batch size; default by dataset: digits 32, others 128")
    train.add_argument("--task", choices=TASKS, default="auto",
                       help="multilabel: a sigmoid per class, binary cross-entropy, mAP/F1 and "
                            "per-class thresholds; auto: the dataset's (multilabel for labels "
                            "files PATH.csv and digit_canvases)")
    train.add_argument("--recipe", choices=RECIPE_NAMES, default=None,
                       help="paper (default: imagenet for ImageNet models, cifar otherwise), or a "
                            "modern recipe: torchvision_v2, rsb_a1, rsb_a2, rsb_a3")
    train.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                       help="change one field of the recipe, e.g. --set label_smoothing=0.05 "
                            "(repeatable; the fields: keras_resnet.recipes.Recipe)")
    train.add_argument("--learning-rate", type=float, default=None)
    train.add_argument("--weight-decay", type=float, default=None,
                       help="replace the model's weight decay (the paper's L2 gradient "
                            "coefficient; models are built with 1e-4)")
    train.add_argument("--shortcut", choices=["A", "B", "C"], default=None)
    train.add_argument("--plain", action="store_true", help="the plain counterpart (no shortcuts)")
    train.add_argument("--strategy", choices=STRATEGIES, default="auto")
    train.add_argument("--precision", choices=PRECISIONS, default="auto",
                       help="auto: the device's fast path (CPU float32, GPU mixed_float16)")
    train.add_argument("--jit-compile", choices=["auto", "on", "off"], default="auto",
                       help="XLA; auto: the device's fast path")
    train.add_argument("--steps-per-execution", type=_auto_or_int, default="auto")
    train.add_argument("--no-fast-path", dest="fast_path", action="store_false",
                       help="let 'auto' mean Keras' defaults instead of the measured fast path")
    train.add_argument("--output-dir", default=None, help="run directory (default runs/MODEL-DATASET)")
    train.add_argument("--no-resume", dest="resume", action="store_false",
                       help="start afresh even if the run directory holds a backup")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--no-export", dest="export", action="store_false",
                       help="skip the SavedModel and float TFLite export at the end")
    _add_data_arguments(train)
    train.set_defaults(run=_train)


def _add_evaluate_export_predict(commands):
    evaluate = commands.add_parser("evaluate", help="top-1/top-5 error of a .keras model")
    evaluate.add_argument("model", help="a .keras file")
    evaluate.add_argument("--dataset", default="digits")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--batch-size", type=int, default=128)
    evaluate.add_argument("--ten-crop", action="store_true", help="the paper's 10-crop testing")
    _add_data_arguments(evaluate)
    evaluate.set_defaults(run=_evaluate)

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
                             "none, int8 (ONNX, OpenVINO)")
    export.add_argument("--output-dir", default="exports")
    export.add_argument("--dataset", default=None,
                        help="data for int8 calibration and parity (default: the training dataset)")
    export.add_argument("--embeddings", action="store_true",
                        help="also write an embeddings model (pooled features) per file format")
    _add_data_arguments(export)
    export.set_defaults(run=_export)

    predict = commands.add_parser("predict", help="top-5 classes of images")
    predict.add_argument("model", help="a .keras file, a run directory, a SavedModel directory, "
                                       "or a .tflite, .onnx or OpenVINO .xml file")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--top-k", type=int, default=5, help="classes per image (>= 1)")
    predict.add_argument("--json", action="store_true", help="machine-readable output")
    predict.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"),
                         help="bfloat16 where the runtime (OpenVINO) and the CPU have it and the "
                              "export measured it to agree; float32 otherwise (default: auto)")
    predict.add_argument("--embeddings", metavar="OUT.npy",
                         help="write the images' embeddings (pooled features) to OUT.npy instead")
    predict.add_argument("--explain", metavar="DIR",
                         help="also write a Grad-CAM overlay PNG of each image's top class to DIR "
                              "(.keras files and run directories)")
    predict.add_argument("--stage", default=None,
                         help="the stage Grad-CAM reads (conv2 ... conv5; default: the last)")
    predict.set_defaults(run=_predict)


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
    tune.set_defaults(run=_tune)


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
    summary.set_defaults(run=_summary)
    _add_train(commands)
    _add_evaluate_export_predict(commands)
    _add_tune(commands)
    serve = commands.add_parser("serve", help="TensorFlow Serving's REST API on an export directory")
    serve.add_argument("export_dir")
    serve.add_argument("--port", type=int, default=8501)
    serve.add_argument("--host", default="127.0.0.1")
    serve.set_defaults(run=_serve)
    weights = commands.add_parser("weights", help="the pretrained weight sets of a model")
    weights.add_argument("model", nargs="?", default=None, help="e.g. resnet50 (default: all)")
    weights.set_defaults(run=_weights)
    return parser


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
