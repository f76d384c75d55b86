"""Small images and an ImageNet ResNet: the low-resolution stem against upsampling to 224.

Table 1's stem (7x7/2 conv, 3x3/2 max pool) shrinks a 32x32 image to 8x8 before the first
residual block and to 1x1 at conv5. Two ways to keep the detail, each with Table 1's weights
(the same shapes):

- ``low_resolution``: ``stem="low_resolution"`` (conv1 at stride 1, no max pool), 32x32 inputs:
  conv5 is 4x4;
- ``upsampled``: the standard stem on the images resized to 224x224: conv5 is 7x7;
- ``standard``: the standard stem on 32x32 inputs, for reference.

Each arm trains the same ResNet (``--depth``) on the bundled digits, loaded at the arm's input
size by ``keras_resnet.data.load`` (§4.2's augmentation, scaled), compiled by
``keras_resnet.training.compile_model`` (the CIFAR recipe: SGD, momentum 0.9, learning rate
0.1 scaled to the batch, weight decay 1e-4), for ``--epochs`` with the same seed, from
``--weights`` (None: He initialisation; a weight set name where its file is in the cache, with
a new classifier). It reports the test top-1 of the final model, the training time per epoch
and the inference throughput (batch 64, images/s, median of 5 calls).

Commands:

    python -m benchmarks.low_resolution                       # ResNet-18, 5 epochs per arm
    python -m benchmarks.low_resolution --epochs 10 --arms low_resolution upsampled
    python -m benchmarks.low_resolution --weights timm_tv_in1k  # when the weights are cached
"""

import argparse
import time

import numpy as np

ARMS = {"low_resolution": (32, "low_resolution"), "upsampled": (224, "standard"),
        "standard": (32, "standard")}


def _model(depth, size, stem, weights, classes):
    import keras_resnet  # first: it loads Keras quietly (KERAS_RESNET_QUIET)
    # isort: split
    import keras

    options = dict(input_shape=(size, size, 3), stem=stem)
    if not weights:
        return keras_resnet.get_model(f"resnet{depth}", classes=classes, **options)
    backbone = keras_resnet.get_model(f"resnet{depth}", weights=weights, include_top=False,
                                      pooling="avg", **options)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(backbone.output)
    return keras.Model(backbone.input, outputs, name=backbone.name)


def _throughput(model, size, rounds=5, batch=64):
    images = np.random.default_rng(0).uniform(0, 1, (batch, size, size, 3)).astype("float32")
    model.predict(images, batch_size=batch, verbose=0)  # compile
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        model.predict(images, batch_size=batch, verbose=0)
        times.append(time.perf_counter() - start)
    return batch / float(np.median(times))


def run_arm(arm, depth, epochs, weights, seed, batch_size=64):
    from keras_resnet import data, training  # first: it loads Keras quietly (KERAS_RESNET_QUIET)
    # isort: split
    import keras

    size, stem = ARMS[arm]
    keras.utils.set_random_seed(seed)
    train, info = data.load("digits", "train", batch_size, image_size=size, seed=seed)
    test, _ = data.load("digits", "test", batch_size, image_size=size)
    model = _model(depth, size, stem, weights, info.num_classes)
    training.compile_model(model, "cifar", batch_size)
    start = time.perf_counter()
    model.fit(train, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    top1 = model.evaluate(test, verbose=0, return_dict=True)["top1"]
    return {"arm": arm, "input": f"{size}x{size}", "stem": stem, "top1": top1,
            "s_per_epoch": seconds / epochs, "images_per_s": _throughput(model, size)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=18)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    args = parser.parse_args(argv)
    rows = []
    for arm in args.arms:
        rows.append(run_arm(arm, args.depth, args.epochs, args.weights, args.seed))
        print(f"{arm}: done", flush=True)
    print(f"\nResNet-{args.depth} on digits, {args.epochs} epochs, weights={args.weights}, "
          f"seed {args.seed}")
    print(f"{'arm':<16}{'input':>9}{'top-1':>8}{'s/epoch':>9}{'images/s':>10}")
    for row in rows:
        print(f"{row['arm']:<16}{row['input']:>9}{row['top1']:>8.4f}{row['s_per_epoch']:>9.1f}"
              f"{row['images_per_s']:>10.1f}")


if __name__ == "__main__":
    main()
