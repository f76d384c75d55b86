"""What ``output_stride`` costs: inference images/s of one ResNet at output stride 32, 16, 8.

Dilation keeps conv4/conv5 (16) or conv3..conv5 (8) at a higher resolution, so the later
stages compute on 4x (16) or 16x/4x (8) as many positions; the parameters do not change. The
three models run in interleaved rounds in one process (a drift of the machine hits all
alike, the order rotating); in each round every model gets one untimed call (switching
models costs the first call after the switch), then ``--calls`` timed calls of
``model.predict`` on a batch of ``--batch`` random images; the figure is the median images/s
over the rounds, beside the multiply-adds per image.

Commands:

    python -m benchmarks.output_stride                       # ResNet-50, 224x224, batch 8
    python -m benchmarks.output_stride --depth 18 --size 512 --batch 2 --rounds 7
"""

import argparse
import time

import numpy as np

from benchmarks.timing import spread

OUTPUT_STRIDES = (32, 16, 8)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3, help="predict calls per model per round")
    args = parser.parse_args(argv)
    import keras_resnet  # quietly: this package sets KERAS_RESNET_QUIET
    # isort: split

    images = np.random.default_rng(0).uniform(0, 1, (args.batch, args.size, args.size, 3)).astype("float32")
    models = {}
    for output_stride in OUTPUT_STRIDES:
        models[output_stride] = keras_resnet.get_model(
            f"resnet{args.depth}", include_top=False, pooling="avg",
            input_shape=(args.size, args.size, 3), output_stride=output_stride)
    rates = {output_stride: [] for output_stride in OUTPUT_STRIDES}
    for round_index in range(args.rounds):
        print(f"  round {round_index + 1}/{args.rounds}", flush=True)
        shift = round_index % len(OUTPUT_STRIDES)
        for output_stride in OUTPUT_STRIDES[shift:] + OUTPUT_STRIDES[:shift]:
            model = models[output_stride]
            # Untimed: the first call after another model re-warms this one's buffers.
            model.predict(images, batch_size=args.batch, verbose=0)
            start = time.perf_counter()
            for _ in range(args.calls):
                model.predict(images, batch_size=args.batch, verbose=0)
            rates[output_stride].append(args.calls * len(images) / (time.perf_counter() - start))
    base = spread(rates[32])["median"]
    print(f"\nResNet-{args.depth}, {args.size}x{args.size}, batch {args.batch}, "
          f"{args.rounds} interleaved rounds of {args.calls} calls")
    print(f"{'output_stride':>13}{'conv5':>9}{'GMACs':>8}{'images/s':>10}{'(IQR)':>9}{'vs 32':>8}")
    for output_stride in OUTPUT_STRIDES:
        stats = spread(rates[output_stride])
        side = models[output_stride].get_layer(
            [layer.name for layer in models[output_stride].layers if layer.name.startswith("conv5_block")][-1]
        ).output.shape[1]
        macs = keras_resnet.count_multiply_adds(models[output_stride]) / 1e9
        print(f"{output_stride:>13}{f'{side}x{side}':>9}{macs:>8.2f}{stats['median']:>10.1f}"
              f"{stats['iqr']:>9.1f}{stats['median'] / base:>7.2f}x")


if __name__ == "__main__":
    main()
