"""Training throughput (images/s) of keras_resnet models beside keras.applications, same process.

Models: keras_resnet ResNet-18/34/50/101/152 (ImageNet, at ``--image-size``, 224 by default as
in the paper, 1000 classes), CIFAR ResNet-20/56/110 (32x32, 10 classes) and keras.applications
ResNet50/101/152 (ImageNet, same size and classes as ours).

Modes (``--modes``, any subset, all in one invocation; join with "+" to combine, e.g.
``mixed+xla``):

- ``float32``: plain graph execution, ``jit_compile=False`` (set explicitly: Keras' "auto"
  turns XLA on when a GPU is present);
- ``xla``: ``jit_compile=True``;
- ``mixed``: mixed precision, ``mixed_bfloat16`` on CPU, ``mixed_float16`` on GPU (Keras
  wraps the optimizer in a LossScaleOptimizer for float16);
- ``spe``: ``steps_per_execution=--steps-per-execution`` (4 by default).

How it measures: every mode of every model is timed the same way, with ``model.fit`` on a
``tf.data`` dataset that repeats one cached in-memory batch (random images, fixed seed), so the
input pipeline costs nothing and ``steps_per_execution`` takes effect (``train_on_batch``
ignores it). One round = one ``fit`` call of ``--steps`` steps (a multiple of the steps per
execution), its wall time including fit's small fixed overhead. Each model first gets a warm-up
``fit`` of one execution (tracing, XLA compilation, first step), then ``--rounds`` timed rounds. A model and its
keras.applications counterpart, in every mode, form one group: their rounds are interleaved
(the order rotates each round), so drifts of the machine hit all of them alike; groups run one
after the other. Compilation: SGD(0.1, momentum 0.9), sparse categorical cross-entropy, no
metrics, no weight decay, identical for every model.

Reported per model and mode: median images/s with min-max and IQR over rounds, ratio to the
same model in float32 and to keras.applications in the same mode, and achieved FLOP/s =
3 x forward multiply-adds x 2 FLOPs x images/s (the usual convention that the backward pass
costs twice the forward; multiply-adds of convolutions and dense layers only, as
``keras_resnet.count_multiply_adds``) with its fraction of the device's theoretical peak for
the mode's compute dtype: the theoretical peak, or the measured matmul peak where that is
higher (then the theoretical's clock is too low); both fractions are in the JSON (see
``python benchmarks/common.py``).

Commands:

    python benchmarks/train_throughput.py     # default, about 10 min on a 2-core CPU:
        # ResNet-20 (32x32, batch 128) and ResNet-50 beside keras.applications ResNet50
        # (224x224, batch 8), modes float32 xla mixed spe, 3 rounds of 4 steps
    python benchmarks/train_throughput.py --models all --rounds 5           # the full table
        # (8 + 3 models x 4 modes at 224; about 2 hours on a 2-core CPU, most of it in
        # ResNet-101/152 and their XLA compilations)
    python benchmarks/train_throughput.py --models all --image-size 112      # quicker full table
        # (about 45 min on a 2-core CPU)
    python benchmarks/train_throughput.py --models resnet50 ka:ResNet50 --modes float32 --rounds 7
    python benchmarks/train_throughput.py --device gpu --batch-size 256 --models all --rounds 5

Model names: ``resnet18`` ... ``resnet152``, ``resnet20`` ... ``resnet110`` (keras_resnet;
``keras_resnet:resnet50`` also works), ``ka:ResNet50`` / ``keras.applications:ResNet50`` (also
101, 152), or ``all``. Results: a table on stdout and ``benchmarks/results/train_throughput.json``.
"""

import argparse
import gc
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

KERAS_RESNET_ALL = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                    "resnet20", "resnet56", "resnet110"]
APPLICATIONS_ALL = ["ka:ResNet50", "ka:ResNet101", "ka:ResNet152"]
DEFAULT_MODELS = ["resnet20", "resnet50", "ka:ResNet50"]
MODES = ("float32", "xla", "mixed", "spe")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_arguments(parser, "train_throughput.json", peak=True)
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS,
                        help="model names or 'all' (default: %(default)s)")
    parser.add_argument("--modes", nargs="+", default=list(MODES),
                        help=f"any of {', '.join(MODES)}, or combinations such as mixed+xla "
                             "(default: all four)")
    parser.add_argument("--image-size", type=int, default=224, help="ImageNet models' input side")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="ImageNet models' batch (default: 8 on CPU, 256 on GPU)")
    parser.add_argument("--cifar-batch-size", type=int, default=None,
                        help="CIFAR models' batch (default: 128, the paper's; 256 when "
                             "--batch-size is 256 or more)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per model and mode")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps per round (default: 4 ImageNet / 8 CIFAR on CPU, "
                             "20 / 40 on GPU; rounded up to a multiple of --steps-per-execution)")
    parser.add_argument("--steps-per-execution", type=int, default=4, help="for the spe mode")
    parser.add_argument("--no-measure-peak", action="store_true",
                        help="skip the matmul peak measurement (theoretical peak only)")
    args = parser.parse_args(argv)
    for mode in args.modes:
        if not set(mode.split("+")) <= set(MODES):
            parser.error(f"--modes: {mode!r} is not one of {', '.join(MODES)} or a '+' combination")
    expanded = []
    for name in args.models:
        for spec in (KERAS_RESNET_ALL + APPLICATIONS_ALL if name == "all" else [name]):
            if spec not in expanded:
                expanded.append(spec)
    args.models = expanded
    return args


def parse_spec(spec):
    """``(source, name, family, depth)`` of a model spec."""
    from keras_resnet.models import parse_model_name

    source, _, name = spec.rpartition(":")
    if source in ("ka", "keras.applications") or spec.startswith("keras.applications."):
        name = name or spec.split(".")[-1]
        if not name.startswith("ResNet") or not name[6:].isdigit():
            raise SystemExit(f"--models: {spec!r}: keras.applications models are ResNet50/101/152")
        return "keras.applications", name, "imagenet", int(name[6:])
    if source not in ("", "keras_resnet"):
        raise SystemExit(f"--models: {spec!r} must be a keras_resnet name (resnet50) or "
                         f"ka:ResNet50")
    try:
        family, depth = parse_model_name(name)
    except ValueError as error:
        raise SystemExit(f"--models: {error}") from None
    return "keras_resnet", name, family, depth


def label(spec):
    source, name, _, _ = parse_spec(spec)
    return f"{source} {name}"


def build(spec, size, classes, policy):
    import keras

    import keras_resnet

    source, name, _, _ = parse_spec(spec)
    keras.config.set_dtype_policy(policy)
    try:
        if source == "keras.applications":
            return getattr(keras.applications, name)(
                weights=None, input_shape=(size, size, 3), classes=classes)
        return keras_resnet.get_model(name, input_shape=(size, size, 3), classes=classes)
    finally:
        keras.config.set_dtype_policy("float32")


def settings_of(mode, device, spe):
    features = set(mode.split("+"))
    return {"precision": common.mixed_policy(device) if "mixed" in features else "float32",
            "jit_compile": "xla" in features,
            "steps_per_execution": spe if "spe" in features else 1}


def group_key(spec):
    _, _, family, depth = parse_spec(spec)
    return f"{family}{depth}"


def run_group(args, specs, tf_device, peak):
    """Build every (model, mode) of one group, time interleaved rounds; returns result rows."""
    import keras
    import tensorflow as tf

    import keras_resnet

    family = parse_spec(specs[0])[2]
    cifar = family == "cifar"
    size = 32 if cifar else args.image_size
    batch = args.cifar_batch_size if cifar else args.batch_size
    classes = 10 if cifar else 1000
    steps = args.steps or ((8 if cifar else 4) if args.device == "cpu" else (40 if cifar else 20))
    spe = args.steps_per_execution
    if any("spe" in mode.split("+") for mode in args.modes):
        steps = -(-steps // spe) * spe
    x, y = common.random_batch(batch, size, classes, args.seed)
    dataset = common.cached_dataset(x, y)

    models, meta = {}, {}
    with tf.device(tf_device):
        for spec in specs:
            macs = None
            for mode in args.modes:
                settings = settings_of(mode, args.device, spe)
                keras.utils.set_random_seed(args.seed)
                model = build(spec, size, classes, settings["precision"])
                macs = macs or keras_resnet.count_multiply_adds(model)
                common.compile_for_benchmark(model, settings["jit_compile"],
                                             settings["steps_per_execution"])
                print(f"  warm-up: {label(spec)}, {mode}", flush=True)
                start = time.perf_counter()
                common.fit_runner(model, dataset, settings["steps_per_execution"], batch)()
                models[(spec, mode)] = model
                meta[(spec, mode)] = {"settings": settings, "multiply_adds": macs,
                                      "warmup_s": time.perf_counter() - start}

        runners = {key: common.fit_runner(m, dataset, steps, batch) for key, m in models.items()}
        rates = common.interleaved(runners, args.rounds)

    rows = []
    for (spec, mode), values in rates.items():
        stats = common.spread(values)
        macs = meta[(spec, mode)]["multiply_adds"]
        flops = 3 * macs * 2 * stats["median"]
        ceiling = common.peak_for(peak, meta[(spec, mode)]["settings"]["precision"])
        reference = rates.get((spec, "float32"))
        counterpart = [s for s in specs if s != spec and parse_spec(s)[0] != parse_spec(spec)[0]]
        other = rates.get((counterpart[0], mode)) if counterpart else None
        rows.append({
            "model": label(spec), "spec": spec, "mode": mode, **meta[(spec, mode)]["settings"],
            "input": f"{size}x{size}", "batch": batch, "steps_per_round": steps,
            "images_per_s": stats, "median": stats["median"], "min": stats["min"],
            "max": stats["max"], "iqr": stats["iqr"],
            "vs_float32": (stats["median"] / common.spread(reference)["median"]
                           if reference else None),
            "vs_counterpart": (stats["median"] / common.spread(other)["median"]
                               if other and parse_spec(spec)[0] == "keras_resnet" else None),
            "forward_multiply_adds": macs, "achieved_flops": flops,
            "peak_flops": ceiling["reference"],
            "fraction_of_peak": flops / ceiling["reference"] if ceiling["reference"] else None,
            "fraction_of_theoretical": (flops / ceiling["theoretical"]
                                        if ceiling["theoretical"] else None),
            "fraction_of_measured_matmul": (flops / ceiling["measured"]
                                            if ceiling["measured"] else None),
            "warmup_s": meta[(spec, mode)]["warmup_s"],
        })
    del models
    keras.backend.clear_session()
    gc.collect()
    return rows


def main():
    args = parse_args()
    tf_device = common.select_device(args.device)
    common.set_seeds(args.seed)
    if args.batch_size is None:
        args.batch_size = 8 if args.device == "cpu" else 256
    if args.cifar_batch_size is None:
        args.cifar_batch_size = 256 if args.batch_size >= 256 else 128
    for spec in args.models:
        parse_spec(spec)
    machine = common.machine_description(args.device)
    print(common.describe(machine))
    peak = common.peak_flops(args.device, measure=not args.no_measure_peak, cpu_ghz=args.cpu_ghz)
    common.print_peak(peak)

    groups = {}
    for spec in args.models:
        groups.setdefault(group_key(spec), []).append(spec)
    rows = []
    for key, specs in groups.items():
        print(f"\n{key}: {', '.join(map(label, specs))}; modes {', '.join(args.modes)}", flush=True)
        rows += run_group(args, specs, tf_device, peak)

    print(f"\nTraining throughput, model.fit on one cached batch, {args.rounds} interleaved rounds "
          f"per group; FLOP/s = 3 x fwd multiply-adds x 2 x images/s; % peak: of the "
          f"{args.device}'s peak for the mode's dtype (theoretical, or the measured matmul where "
          f"higher; above)")
    common.print_table(rows, [
        ("model", "model", ""), ("input", "input", ""), ("batch", "batch", "d"),
        ("mode", "mode", ""), ("images/s", "median", ".2f"), ("min", "min", ".2f"),
        ("max", "max", ".2f"), ("IQR", "iqr", ".2f"), ("vs float32", "vs_float32", ".2f"),
        ("vs keras.app", "vs_counterpart", ".2f"),
        ("fwd GMACs", lambda r: r["forward_multiply_adds"] / 1e9, ".3f"),
        ("GFLOP/s", lambda r: r["achieved_flops"] / 1e9, ".1f"),
        ("% peak", lambda r: r["fraction_of_peak"] and 100 * r["fraction_of_peak"], ".1f"),
    ])
    common.write_json(args.json, machine, vars(args), rows, peak=peak,
                      flops_convention="achieved FLOP/s = 3 x forward multiply-adds x 2 FLOPs x "
                                       "images/s (backward = 2 x forward)")


if __name__ == "__main__":
    main()
