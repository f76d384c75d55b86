"""Training and inference images/s of family members beside ResNet-50, in one process.

Each model (default: ResNet-50, ResNeXt-50 32x4d, ResNet-50-D) is built at ``--size`` with
1000 classes and compiled alike (SGD 0.1, momentum 0.9, sparse categorical cross-entropy, no
metrics, the models' own weight decay). One round = ``--steps`` ``train_on_batch`` calls on one
in-memory batch of ``--batch`` random images, then ``--calls`` ``predict`` calls on it; the
models' rounds are interleaved, the order rotating, after an untimed warm-up (tracing, first
steps), so a drift of the machine hits every model alike. Figures: median images/s over the
rounds with the IQR, the ratio to the first model, and the multiply-adds per image.

Commands:

    python -m benchmarks.family                         # 224x224, batch 8, 3 rounds
    python -m benchmarks.family --models resnet50 seresnet50 wide_resnet50_2 --rounds 5
"""

import argparse

import numpy as np

from benchmarks.timing import interleaved, spread


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "resnext50_32x4d", "resnet50d"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="training steps per round")
    parser.add_argument("--calls", type=int, default=2, help="predict calls per round")
    args = parser.parse_args(argv)
    import keras_resnet  # first, quietly: this package sets KERAS_RESNET_QUIET
    # isort: split

    import keras

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (args.batch, args.size, args.size, 3)).astype("float32")
    labels = rng.integers(0, 1000, args.batch)
    models = {}
    for name in args.models:
        model = keras_resnet.get_model(name, input_shape=(args.size, args.size, 3))
        model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy",
                      jit_compile=False)
        model.train_on_batch(images, labels)  # warm-up: tracing and the first steps
        model.predict(images, batch_size=args.batch, verbose=0)
        models[name] = model

    def train(model):
        def run():
            for _ in range(args.steps):
                model.train_on_batch(images, labels)
            return args.steps * args.batch
        return run

    def infer(model):
        def run():
            model.predict(images, batch_size=args.batch, verbose=0)  # re-warm after a switch
            for _ in range(args.calls):
                model.predict(images, batch_size=args.batch, verbose=0)
            return (args.calls + 1) * args.batch
        return run

    functions = {}
    for name, model in models.items():
        functions[(name, "train")] = train(model)
        functions[(name, "infer")] = infer(model)
    rates = interleaved(functions, args.rounds)
    print(f"\n{args.size}x{args.size}, batch {args.batch}, {args.rounds} interleaved rounds "
          f"({args.steps} training steps, {args.calls + 1} predict calls each), Keras "
          f"{keras.__version__} on {keras.backend.backend()}, float32")
    print(f"{'model':<18}{'params':>12}{'GMACs':>7}{'train img/s':>13}{'(IQR)':>7}{'vs':>6}"
          f"{'infer img/s':>13}{'(IQR)':>7}{'vs':>6}")
    first = args.models[0]
    base = {kind: spread(rates[(first, kind)])["median"] for kind in ("train", "infer")}
    for name, model in models.items():
        cells = []
        for kind in ("train", "infer"):
            stats = spread(rates[(name, kind)])
            cells.append(f"{stats['median']:>13.1f}{stats['iqr']:>7.1f}"
                         f"{stats['median'] / base[kind]:>5.2f}x")
        params = keras_resnet.summary.count_trainable_params(model)
        macs = keras_resnet.count_multiply_adds(model) / 1e9
        print(f"{name:<18}{params:>12,}{macs:>7.2f}{''.join(cells)}")


if __name__ == "__main__":
    main()
