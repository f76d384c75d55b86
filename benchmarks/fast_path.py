"""Which compile settings train fastest on this machine, and how the default compares.

For each model it times ``model.fit`` on an in-memory batch (cached ``tf.data``, so the input
pipeline costs nothing) under every combination the fast path chooses from: float32 or mixed
precision (bfloat16 on CPU, float16 on GPU), XLA on or off, 1 or more steps per execution.
Rounds are interleaved; the table gives the median images/s and its ratio to Keras' defaults.
It then measures what ``keras-resnet train`` does by default (``keras_resnet.distribute.
fast_path()`` + ``training.compile_model``) against a plain ``model.fit`` of
keras.applications' ResNet50 with default compile settings, same batch.

    # CPU: ResNet-20 (32x32, batch 32), ResNet-50 (224, batch 16)
    python -m benchmarks.fast_path
    python -m benchmarks.fast_path --device gpu --batch-size 256 --models resnet50
"""

import argparse
import itertools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import backends, feeds, hardware, report, timing  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    report.add_common_arguments(parser, "fast_path.json")
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet50"])
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: 32 for CIFAR models, 16 (CPU) or 256 (GPU) for ImageNet models")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps-per-execution", type=int, default=8, help="the value tried besides 1")
    parser.add_argument("--skip-modes", action="store_true", help="only the default vs keras.applications ratio")
    return parser.parse_args()


args = parse_args()
backends.select_device(args.device)
backends.set_seeds(args.seed)

import keras  # noqa: E402

import keras_resnet  # noqa: E402
from keras_resnet import distribute, training  # noqa: E402
from keras_resnet.models import parse_model_name  # noqa: E402


def shape_and_batch(name):
    family = parse_model_name(name)[0] if not name.startswith("keras.applications") else "imagenet"
    size = 32 if family == "cifar" else 224
    batch = args.batch_size or (32 if family == "cifar" else (16 if args.device == "cpu" else 256))
    steps = args.steps or max(4, min(40, 2048 // (batch * (1 if family == "cifar" else 32))))
    return size, batch, steps


def dataset(size, batch):
    return feeds.cached_dataset(*feeds.random_batch(batch, size, 10, args.seed))


def build(name, size, precision):
    keras.config.set_dtype_policy(precision)
    try:
        if name == "keras.applications.ResNet50":
            return keras.applications.ResNet50(weights=None, input_shape=(size, size, 3), classes=10)
        return keras_resnet.get_model(name, input_shape=(size, size, 3), classes=10)
    finally:
        keras.config.set_dtype_policy("float32")


def time_models(models, data, steps, batch):
    """Interleaved rounds of one ``fit`` epoch each (after one warm-up epoch); spread of images/s."""
    runners = {key: feeds.fit_runner(model, data, steps, batch) for key, model in models.items()}
    for run in runners.values():
        run()
    rates = timing.interleaved(runners, args.rounds, progress=False)
    return {key: timing.spread(r) for key, r in rates.items()}


def with_ratios(stats, reference):
    base = stats[reference]["median"]
    return {key: {**s, "ratio": s["median"] / base} for key, s in stats.items()}


def modes_table(name):
    size, batch, steps = shape_and_batch(name)
    mixed = backends.mixed_policy(args.device)
    combos = list(itertools.product(["float32", mixed], [False, True], [1, args.steps_per_execution]))
    models = {}
    for precision, xla, spe in combos:
        model = build(name, size, precision)
        training.compile_model(model, "cifar", batch, jit_compile=xla, steps_per_execution=spe)
        models[(precision, xla, spe)] = model
    stats = with_ratios(time_models(models, dataset(size, batch), steps, batch), ("float32", False, 1))
    fast = distribute.fast_path(family="cifar" if size == 32 else "imagenet")
    print(f"\n{name}, {size}x{size}, batch {batch}, {steps} steps per round, {args.rounds} rounds")
    print(f"{'precision':16s} {'XLA':>5s} {'steps/exec':>10s} {'images/s':>9s} {'min':>8s} {'max':>8s} {'ratio':>6s}")
    for (precision, xla, spe), s in sorted(stats.items(), key=lambda kv: -kv[1]["median"]):
        chosen = " <- fast path" if (precision, xla, spe) == (
            fast["precision"], fast["jit_compile"], fast["steps_per_execution"]) else ""
        print(f"{precision:16s} {str(xla):>5s} {spe:10d} {s['median']:9.1f} {s['min']:8.1f} "
              f"{s['max']:8.1f} {s['ratio']:5.2f}x{chosen}")
    return {f"{p}|xla={x}|spe={n}": s for (p, x, n), s in stats.items()}


def default_vs_applications():
    """keras-resnet train's default compile vs keras.applications ResNet50's plain fit."""
    size, batch, steps = shape_and_batch("resnet50")
    fast = distribute.fast_path(family="imagenet")
    ours = build("resnet50", size, fast["precision"])
    training.compile_model(ours, "imagenet", batch)  # jit/steps "auto" -> the fast path
    theirs = build("keras.applications.ResNet50", size, "float32")
    theirs.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                   loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    models = {"keras_resnet ResNet50, keras-resnet train defaults": ours,
              "keras.applications ResNet50, default compile": theirs}
    stats = with_ratios(time_models(models, dataset(size, batch), steps, batch),
                        "keras.applications ResNet50, default compile")
    print(f"\nResNet-50 training, {size}x{size}, batch {batch}, fast path {fast}")
    for key, s in stats.items():
        print(f"{key:52s} {s['median']:8.2f} images/s [{s['min']:.2f}-{s['max']:.2f}] {s['ratio']:.2f}x")
    return stats


def main():
    machine = hardware.machine_description(args.device)
    print(hardware.describe(machine))
    fast = {family: distribute.fast_path(family=family) for family in ("cifar", "imagenet")}
    modes = {} if args.skip_modes else {name: modes_table(name) for name in args.models}
    ratio = default_vs_applications()
    report.write_json(args.json, machine, vars(args), {"modes": modes, "default_vs_keras_applications": ratio},
                      fast_path=fast)


if __name__ == "__main__":
    main()
