"""What each ``keras-resnet`` subcommand does, once ``keras_resnet.cli`` has parsed its flags:
each calls one library function and prints. Each imports what it needs when it runs, so
building the parser (``--help``) loads no Keras or TensorFlow.
"""

import os

from keras_resnet.errors import InvalidArgument


def summary(args):
    from keras_resnet.models import MODEL_NAMES
    from keras_resnet.summary import summary_table

    unknown = [name for name in args.models if name not in MODEL_NAMES]
    if unknown:
        raise InvalidArgument(f"unknown model {unknown[0]!r}; choose from {', '.join(MODEL_NAMES)}")
    print(summary_table(args.models or None))


def print_run(result):
    exported = result.get("export") or {}
    if exported.get("saved_model"):
        print(f"SavedModel: {exported['saved_model']}")
    if exported.get("parity"):
        from keras_resnet.export import format_parity

        print(format_parity(exported["parity"]))
    test = result["test"]
    if "map_50" in test:  # a detection run's COCO figures
        from keras_resnet.detection_evaluation import print_figures

        print_figures(test)
    elif "miou" in test:
        print(f"test mIoU {test['miou']:.4f}, pixel accuracy {test['pixel_accuracy']:.4f}, "
              f"mean class accuracy {test['mean_class_accuracy']:.4f}")
        print("test IoU per class: " + ", ".join(
            f"{name} {'-' if iou is None else f'{iou:.3f}'}"
            for name, iou in test["per_class_iou"].items()))
    elif "mAP" in test:
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
        >>> from keras_resnet.cli import build_parser
        >>> train_config(build_parser().parse_args(["train", "--epochs", "2"])).recipe.epochs
        2
    """
    from keras_resnet.recipes import parse_overrides
    from keras_resnet.train.config import (
        DataConfig,
        FineTuneConfig,
        HardwareConfig,
        OutputConfig,
        RecipeConfig,
        RunConfig,
    )
    from keras_resnet.train.detection import default_model

    options = {}
    if getattr(args, "aux", False):
        options["aux"] = True
    if getattr(args, "output_stride", None) is not None:
        options["output_stride"] = args.output_stride
    for flag, option in (("retinanet_version", "version"), ("head_width", "head_width")):
        if getattr(args, flag, None) is not None:  # RetinaNet's options
            options[option] = getattr(args, flag)
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
    model = args.model or default_model(args.dataset, args.task)
    return RunConfig(
        model=model, task=args.task, head=getattr(args, "head", None), seed=args.seed,
        model_options=options,
        data=DataConfig(args.dataset, data_dir=args.data_dir, download=args.download,
                        validation=args.validation, validation_fraction=args.validation_fraction,
                        image_size=args.image_size),
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


def train(args):
    from keras_resnet.train import flow

    print_run(flow.run(train_config(args)))


def lr_find(args):
    """``keras-resnet lr-find``: the range test of the run the train flags describe; prints
    each rule's rate, the run's own and the files written."""
    from keras_resnet.lr_find import check_range, lr_find

    check_range(args.start_lr, args.end_lr, args.steps, args.repeats, flags=True)
    result = lr_find(train_config(args), start_lr=args.start_lr, end_lr=args.end_lr,
                     steps=args.steps, repeats=args.repeats, output_dir=args.out)
    for line in result.lines():
        print(line)


def _interpret(args):
    """``evaluate --interpret DIR``: the split's interpretation files, and where they are."""
    from keras_resnet.interpret import interpret

    if args.ten_crop:
        raise InvalidArgument("`--interpret` reads single-crop predictions; it does not go with "
                              "`--ten-crop`.")
    result = interpret(args.model, args.dataset, args.split, output_dir=args.interpret,
                       data_dir=args.data_dir, batch_size=args.batch_size, download=args.download)
    if "per_label" in result:
        print(f"{args.dataset} {args.split}: exact match {result['exact_match']:.2%} over "
              f"{result['examples']} images")
        for row in sorted(result["per_label"], key=lambda row: row["f1"])[:3]:
            print(f"  {row['label']}: F1 {row['f1']:.3f} ({row['fp']} false, {row['fn']} missed)")
    else:
        print(f"{args.dataset} {args.split}: top-1 error {1 - result['accuracy']:.2%} over "
              f"{result['examples']} images")
        for pair in result["most_confused"][:3]:
            print(f"  {pair['true']} taken for {pair['predicted']}: {pair['count']}")
    print(f"interpretation: {args.interpret} ({', '.join(result['paths'])})")


def evaluate(args):
    from keras_resnet.evaluation import evaluate

    if args.interpret:
        _interpret(args)
        return
    metrics = evaluate(args.model, args.dataset, args.split, batch_size=args.batch_size,
                       ten_crop=args.ten_crop, data_dir=args.data_dir, download=args.download)
    crops = " (10-crop)" if args.ten_crop else ""
    if "map_50" in metrics:  # a detector's COCO figures
        from keras_resnet.detection_evaluation import print_figures

        print(f"{args.dataset} {args.split}: {metrics['images']} images, "
              f"{metrics['detections']} detections")
        print_figures(metrics)
        return
    if "mAP" in metrics:
        print(f"{args.dataset} {args.split}: mAP {metrics['mAP']:.4f}, F1 {metrics['f1_macro']:.4f} "
              f"(macro) / {metrics['f1_micro']:.4f} (micro) at the model's thresholds")
        return
    print(f"{args.dataset} {args.split}{crops}: top-1 error {1 - metrics['top1']:.2%}, "
          f"top-5 error {1 - metrics['top5']:.2%}")


def report(args):
    from keras_resnet.reports import read_run, report

    read_run(args.run_dir, "RUN")  # a bad RUN is named as the command line names it
    path = report(args.run_dir, args.output, interpret=args.interpret, data_dir=args.data_dir,
                  download=args.download)
    print(f"report: {path}")


def export(args):
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


def _predict_masks(args):
    """``predict`` on a segmentation model: mask and overlay files in ``--output-dir`` (default
    ./masks), one JSON line per image."""
    import json

    from keras_resnet.export.masks import segment_files, write_mask_files

    if args.embeddings or args.explain:
        flag = "--embeddings" if args.embeddings else "--explain"
        raise InvalidArgument(f"`{flag}` is for classifiers; {args.model!r} is a segmentation "
                              "model (predict writes its masks).")
    output_dir = args.output_dir or "masks"
    results = segment_files(args.model, args.images, precision=args.precision)
    for written in write_mask_files(results, output_dir):
        print(json.dumps(written))


def _predict_boxes(args):
    """``predict`` on a detector: one JSON line per image (its boxes at least
    ``--score-threshold``, in its own pixels) and NAME_boxes.png in ``--output-dir`` (default
    ./boxes)."""
    import json

    from keras_resnet.export.detections import detect_files, write_detection_files

    for flag, given in (("--embeddings", args.embeddings), ("--explain", args.explain)):
        if given:
            raise InvalidArgument(f"`{flag}` is for classifiers; {args.model!r} is a detector "
                                  "(predict writes its boxes).")
    results = detect_files(args.model, args.images, score_threshold=args.score_threshold,
                           precision=args.precision)
    for written in write_detection_files(results, args.output_dir or "boxes"):
        print(json.dumps(written))


def predict(args):
    import json

    from keras_resnet.export import predict_files
    from keras_resnet.export.detections import is_detection
    from keras_resnet.export.masks import is_segmentation

    if is_segmentation(args.model):
        _predict_masks(args)
        return
    if is_detection(args.model):
        _predict_boxes(args)
        return
    if args.stage and not args.explain:
        raise InvalidArgument("`--stage` chooses the layer Grad-CAM reads; give `--explain DIR` with it.")
    if args.embeddings and args.explain:
        raise InvalidArgument("`--explain` explains predictions; it does not go with `--embeddings`.")
    if args.embeddings:
        import numpy as np

        from keras_resnet.export.formats import check_writable
        from keras_resnet.saving import atomic_path

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
        from keras_resnet.explain import check_explainable
        from keras_resnet.export.formats import check_writable

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


def serve(args):
    from keras_resnet.serving import serve

    serve(args.export_dir, host=args.host, port=args.port, precision=args.precision)


def weights(args):
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


def tune(args):
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
