"""Training-step throughput of keras_resnet models next to keras.applications, same process.

Every model is compiled the same way (SGD momentum 0.9, sparse categorical cross-entropy) and
fed the same in-memory batch; rounds are interleaved so that drifts of the machine hit every
model alike. Prints a table (median images/s and spread over rounds) and writes JSON.

    python benchmarks/train_throughput.py                      # ResNet-50 pair, 224x224, batch 16
    python benchmarks/train_throughput.py --models keras_resnet:resnet20 --image-size 32 --batch-size 128
"""

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_resnet  # noqa: E402


def build(spec, image_size, classes):
    """``keras_resnet:resnet50`` or ``keras.applications:ResNet50`` -> a model."""
    source, name = spec.split(":")
    shape = (image_size, image_size, 3)
    if source == "keras_resnet":
        return keras_resnet.get_model(name, input_shape=shape, classes=classes)
    if source == "keras.applications":
        return getattr(keras.applications, name)(weights=None, input_shape=shape, classes=classes)
    raise ValueError(f"model spec must start with keras_resnet: or keras.applications:; got {spec!r}")


def measure(args):
    rng = np.random.default_rng(0)
    x = rng.random((args.batch_size, args.image_size, args.image_size, 3), dtype="float32")
    y = rng.integers(0, args.classes, args.batch_size)
    if args.precision != "float32":
        keras.config.set_dtype_policy(args.precision)
    models = {}
    for spec in args.models:
        model = build(spec, args.image_size, args.classes)
        model.compile(
            keras.optimizers.SGD(0.1, momentum=0.9),
            "sparse_categorical_crossentropy",
            jit_compile=args.jit_compile,
        )
        for _ in range(args.warmup):
            model.train_on_batch(x, y)
        models[spec] = model
    rates = {spec: [] for spec in models}
    for _ in range(args.rounds):
        for spec, model in models.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                model.train_on_batch(x, y)
            rates[spec].append(args.steps * args.batch_size / (time.perf_counter() - start))
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["keras_resnet:resnet50", "keras.applications:ResNet50"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="training steps per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_float16", "mixed_bfloat16"])
    parser.add_argument("--json", default="benchmarks/results/train_throughput.json")
    args = parser.parse_args()

    rates = measure(args)
    reference = statistics.median(rates[args.models[-1]])
    print(f"batch {args.batch_size}, {args.image_size}x{args.image_size}, {args.precision}, "
          f"jit_compile={args.jit_compile}, {args.rounds} rounds x {args.steps} steps, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"{'model':36s} {'median img/s':>12s} {'min':>8s} {'max':>8s} {'vs last':>8s}")
    results = []
    for spec, values in rates.items():
        median = statistics.median(values)
        print(f"{spec:36s} {median:12.2f} {min(values):8.2f} {max(values):8.2f} {median / reference:7.3f}x")
        results.append({"model": spec, "median": median, "min": min(values), "max": max(values),
                        "rounds": values, "ratio_to_last": median / reference})
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"settings": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
