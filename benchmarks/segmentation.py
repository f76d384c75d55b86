"""What a segmentation head costs: inference images/s of FCN, DeepLabV3 and DeepLabV3+ on one
ResNet against the backbone alone, at the output stride each head uses.

torchvision's FCN and DeepLabV3 read conv5 at output stride 8 (conv4 and conv5 dilated);
DeepLabV3+ (Chen et al. 2018) at 16, with a conv2 branch. The backbone rows are the same
ResNet without its classifier at those strides, so ``vs backbone`` is the head's own share.
Every model takes ``--batch`` random images of ``--size`` x ``--size`` and gives logits at
that size; they run in interleaved rounds in one process (a drift of the machine hits all
alike, the order rotating), each round one untimed call per model then ``--calls`` timed
calls of ``model.predict``; the figure is the median images/s over the rounds, beside the
multiply-adds per image.

Commands:

    python -m benchmarks.segmentation                     # ResNet-50, 512x512, batch 1
    python -m benchmarks.segmentation --depth 18 --size 256 --batch 4 --rounds 5
"""

import argparse
import time

import numpy as np

from benchmarks.hardware import describe, machine_description
from benchmarks.timing import spread

HEADS = (("FCN", 8), ("DeepLabV3", 8), ("DeepLabV3Plus", 16))


def build_models(keras_resnet, depth, size, classes):
    """``{row name: (model, backbone row it compares with or None)}``."""
    shape = (size, size, 3)
    models = {}
    for output_stride in sorted({stride for _, stride in HEADS}, reverse=True):
        models[f"backbone, output stride {output_stride}"] = (keras_resnet.get_model(
            f"resnet{depth}", include_top=False, input_shape=shape, output_stride=output_stride), None)
    for head, output_stride in HEADS:
        model = getattr(keras_resnet, head)(f"resnet{depth}", classes=classes, input_shape=shape,
                                            output_stride=output_stride)
        models[f"{head}, output stride {output_stride}"] = (
            model, f"backbone, output stride {output_stride}")
    return models


def time_models(models, images, rounds, calls):
    """``{row name: [images/s per round]}``: interleaved rounds, the order rotating."""
    names = list(models)
    rates = {name: [] for name in names}
    for round_index in range(rounds):
        print(f"  round {round_index + 1}/{rounds}", flush=True)
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            model = models[name][0]
            model.predict(images, batch_size=len(images), verbose=0)  # untimed: re-warm
            start = time.perf_counter()
            for _ in range(calls):
                model.predict(images, batch_size=len(images), verbose=0)
            rates[name].append(calls * len(images) / (time.perf_counter() - start))
    return rates


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--classes", type=int, default=21, help="VOC's 21 by default")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=2, help="predict calls per model per round")
    args = parser.parse_args(argv)
    import keras_resnet  # quietly: this package sets KERAS_RESNET_QUIET
    # isort: split

    images = np.random.default_rng(0).uniform(0, 255, (args.batch, args.size, args.size, 3)).astype("float32")
    models = build_models(keras_resnet, args.depth, args.size, args.classes)
    rates = time_models(models, images, args.rounds, args.calls)
    print(f"\n{describe(machine_description('cpu'))}")
    print(f"ResNet-{args.depth}, {args.size}x{args.size}, batch {args.batch}, {args.classes} classes, "
          f"{args.rounds} interleaved rounds of {args.calls} calls")
    print(f"{'model':<32}{'GMACs':>8}{'images/s':>10}{'(IQR)':>8}{'vs backbone':>13}")
    for name, (model, backbone) in models.items():
        stats = spread(rates[name])
        macs = keras_resnet.count_multiply_adds(model) / 1e9
        ratio = "" if backbone is None else f"{stats['median'] / spread(rates[backbone])['median']:.2f}x"
        print(f"{name:<32}{macs:>8.1f}{stats['median']:>10.2f}{stats['iqr']:>8.2f}{ratio:>13}")


if __name__ == "__main__":
    main()
