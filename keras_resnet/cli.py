"""The ``keras-resnet`` command line: thin wrappers over the package's modules."""

import argparse
import os
import sys


def _summary(args):
    from keras_resnet.architectures import NAMED_MODELS
    from keras_resnet.summary import summary_table

    unknown = [name for name in args.models if name not in NAMED_MODELS]
    if unknown:
        print(
            f"keras-resnet summary: unknown model {unknown[0]!r}; choose from "
            f"{', '.join(NAMED_MODELS)}",
            file=sys.stderr,
        )
        return 2
    print(summary_table(args.models or None))
    return 0


def _train(args):
    from keras_resnet.training import NaNError, train

    options = {}
    if args.shortcut:
        options["shortcut"] = args.shortcut
    if args.plain:
        options["residual"] = False
    try:
        result = train(
            args.model, args.dataset, run_dir=args.output_dir, epochs=args.epochs,
            batch_size=args.batch_size, recipe=args.recipe, learning_rate=args.learning_rate,
            weight_decay=args.weight_decay, strategy=args.strategy, precision=args.precision,
            jit_compile={"auto": "auto", "on": True, "off": False}[args.jit_compile],
            steps_per_execution=args.steps_per_execution, fast_path=args.fast_path,
            resume=args.resume,
            data_dir=args.data_dir, download=args.download, seed=args.seed,
            model_options=options,
        )
    except NaNError as error:
        print(f"keras-resnet train: {error}", file=sys.stderr)
        return 1
    if args.export:
        _export_run(result["run_dir"], os.path.join(result["run_dir"], "export"),
                    ["saved_model", "tflite"], [None], data_dir=args.data_dir)
    test = result["test"]
    print(f"test top-1 accuracy {test['top1']:.4f} (error {1 - test['top1']:.2%}), "
          f"top-5 accuracy {test['top5']:.4f} (error {1 - test['top5']:.2%})")
    print(f"run directory: {result['run_dir']}")
    return 0


def _export_run(model, output_dir, formats, quantizations, dataset=None, data_dir=None):
    """Write the exports of ``model`` and print the TFLite parity report; returns the paths."""
    from keras_resnet import data, export

    keras_model, info = export.resolve_model(model)
    written = []
    if "saved_model" in formats:
        path = export.export_saved_model(keras_model, output_dir, preprocessing=info)
        print(f"SavedModel: {path}")
        written.append(path)
    if "tflite" in formats:
        dataset = dataset or info.name
        test, _ = data.load(dataset, "test", 256, training=False, data_dir=data_dir, cache=False)
        train, _ = data.load(dataset, "train", 200, training=False, data_dir=data_dir, cache=False)
        images = next(iter(test))[0].numpy()
        representative = next(iter(train))[0].numpy()
        print(f"{'file':28s} {'max |diff|':>10s} {'top-1 agree':>11s} {'size KiB':>9s} {'ms/image':>9s}")
        for quantization in quantizations:
            name = f"model_{quantization or 'float32'}.tflite"
            path = export.tflite(keras_model, os.path.join(output_dir, keras_model.name, "tflite", name),
                                 quantization, representative_data=representative,
                                 preprocessing=info)
            report = export.parity_report(keras_model, path, images)
            print(f"{name:28s} {report['max_abs_diff']:10.2e} {report['top1_agreement']:11.2%} "
                  f"{report['size_bytes'] / 1024:9.1f} {report['latency_ms']:9.3f}")
            written.append(path)
    return written


def _export(args):
    formats = [f.strip() for f in args.format.split(",")]
    unknown = [f for f in formats if f not in ("saved_model", "tflite")]
    if unknown:
        raise ValueError(f"`--format` must list saved_model and/or tflite; got {unknown[0]!r}.")
    # float32 always, as the reference of the parity report; then the asked quantizations.
    quantizations = [None]
    for q in args.quantize.split(","):
        q = None if q.strip() in ("", "none", "float32") else q.strip()
        if q not in quantizations:
            quantizations.append(q)
    _export_run(args.model, args.output_dir, formats, quantizations, args.dataset, args.data_dir)
    return 0


def _predict(args):
    import json

    from keras_resnet.export import predict_files

    results = predict_files(args.model, args.images, top_k=args.top_k)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for result in results:
        print(result["image"])
        for entry in result["top_k"]:
            print(f"  {entry['score']:.4f}  {entry['label']}")
    return 0


def _serve(args):
    from keras_resnet.serving import serve

    serve(args.export_dir, host=args.host, port=args.port)
    return 0


def _evaluate(args):
    import keras

    from keras_resnet import data
    from keras_resnet.training import evaluate_ten_crop

    model = keras.saving.load_model(args.model)
    if args.ten_crop:
        dataset, _ = data.load(args.dataset, args.split, args.batch_size, training=False,
                               data_dir=args.data_dir, download=args.download, ten_crop=True)
        metrics = evaluate_ten_crop(model, dataset)
    else:
        dataset, _ = data.load(args.dataset, args.split, args.batch_size, training=False,
                               data_dir=args.data_dir, download=args.download)
        model.compile(metrics=[keras.metrics.SparseCategoricalAccuracy(name="top1"),
                               keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5")])
        metrics = model.evaluate(dataset, return_dict=True, verbose=0)
    crops = " (10-crop)" if args.ten_crop else ""
    print(f"{args.dataset} {args.split}{crops}: top-1 error {1 - metrics['top1']:.2%}, "
          f"top-5 error {1 - metrics['top5']:.2%}")
    return 0


def _values(flag, text, convert):
    """``"20,32"`` -> (20, 32); names the flag when a value does not parse."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    try:
        return tuple(convert(item) for item in items)
    except ValueError:
        raise ValueError(f"`{flag}` must be a comma-separated list of {convert.__name__} values; "
                         f"got {text!r}.") from None


def _range(flag, text):
    """``"0.01:0.3"`` -> (0.01, 0.3); a single number fixes the value."""
    parts = text.split(":")
    try:
        values = tuple(float(part) for part in parts)
    except ValueError:
        values = ()
    if len(values) not in (1, 2):
        raise ValueError(f"`{flag}` must be MIN:MAX (or one number); got {text!r}.")
    return values if len(values) == 2 else values * 2


def _flag_value(text):
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise ValueError(text)
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
    return 0


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


def build_parser():
    """The argument parser of ``keras-resnet``."""
    from keras_resnet.architectures import NAMED_MODELS

    parser = argparse.ArgumentParser(
        prog="keras-resnet",
        description="ResNets of He et al. 2015 for Keras 3: summarize, train, tune, export, serve.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    summary = commands.add_parser(
        "summary", help="depth, parameters and multiply-adds of every model vs the paper"
    )
    summary.add_argument(
        "models", nargs="*", metavar="MODEL",
        help=f"models to list (default: all of {', '.join(NAMED_MODELS)})",
    )
    summary.set_defaults(run=_summary)

    from keras_resnet.distribute import PRECISIONS, STRATEGIES
    from keras_resnet.training import RECIPES

    train = commands.add_parser(
        "train", help="train a ResNet with the paper's recipe (default: ResNet-20 on digits)"
    )
    train.add_argument("--model", default="resnet20",
                       help="a model name (resnet20, resnet50, ...) or a .keras file")
    train.add_argument("--dataset", default="digits",
                       help="'digits' (offline), a tensorflow-datasets name or an image folder")
    train.add_argument("--epochs", type=int, default=None,
                       help="default by dataset: digits 40, cifar10/100 164 (§4.2), others 30")
    train.add_argument("--batch-size", type=int, default=None,
                       help="global batch size; default by dataset: digits 32, others 128")
    train.add_argument("--recipe", choices=list(RECIPES), default=None,
                       help="default: imagenet for ImageNet models, cifar otherwise")
    train.add_argument("--learning-rate", type=float, default=None)
    train.add_argument("--weight-decay", type=float, default=None,
                       help="the paper's weight decay (L2 gradient coefficient), default 1e-4")
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

    evaluate = commands.add_parser("evaluate", help="top-1/top-5 error of a .keras model")
    evaluate.add_argument("model", help="a .keras file")
    evaluate.add_argument("--dataset", default="digits")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--batch-size", type=int, default=128)
    evaluate.add_argument("--ten-crop", action="store_true", help="the paper's 10-crop testing")
    _add_data_arguments(evaluate)
    evaluate.set_defaults(run=_evaluate)

    export = commands.add_parser(
        "export", help="SavedModel (TensorFlow Serving layout) and TFLite, with a parity report"
    )
    export.add_argument("model", help="a run directory or a .keras file")
    export.add_argument("--format", default="saved_model,tflite", help="saved_model,tflite")
    export.add_argument("--quantize", default="none",
                        help="comma-separated: none, float16, dynamic, int8, int8_full")
    export.add_argument("--output-dir", default="exports")
    export.add_argument("--dataset", default=None,
                        help="data for int8 calibration and parity (default: the training dataset)")
    _add_data_arguments(export)
    export.set_defaults(run=_export)

    predict = commands.add_parser("predict", help="top-5 classes of images")
    predict.add_argument("model", help="a .keras file, a SavedModel directory or a .tflite file")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--top-k", type=int, default=5)
    predict.add_argument("--json", action="store_true", help="machine-readable output")
    predict.set_defaults(run=_predict)

    from keras_resnet.tuning import TUNERS

    tune = commands.add_parser(
        "tune", help="keras-tuner search over depth, width, shortcut and the recipe's settings"
    )
    tune.add_argument("--dataset", default="digits")
    tune.add_argument("--tuner", choices=TUNERS, default="hyperband")
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

    serve = commands.add_parser("serve", help="TensorFlow Serving's REST API on an export directory")
    serve.add_argument("export_dir")
    serve.add_argument("--port", type=int, default=8501)
    serve.add_argument("--host", default="127.0.0.1")
    serve.set_defaults(run=_serve)
    return parser


def main(argv=None):
    """Entry point of the ``keras-resnet`` console script."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:
        print(f"keras-resnet {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
