"""Seconds per image of a Grad-CAM explanation (keras_resnet.explain.grad_cam) beside a plain
prediction, in one process.

A model (default ResNet-50 at 224x224, 1000 classes, random weights) explains ``--batch``
random images per call: its prediction, the stage's activations and the gradient of the top
class's score (TensorFlow's GradientTape, eager). Rounds of ``grad_cam`` and of ``predict`` are
interleaved after an untimed warm-up. Figures: median seconds per image over the rounds, with
the spread.

Commands:

    python -m benchmarks.explain                            # ResNet-50, batch 1 and 8, 5 rounds
    python -m benchmarks.explain --model resnet20 --size 32 --batches 1 32
"""

import argparse

import numpy as np

from benchmarks.timing import interleaved, spread


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    import keras_resnet  # first, quietly: this package sets KERAS_RESNET_QUIET
    # isort: split
    from keras_resnet import explain

    model = keras_resnet.get_model(args.model, input_shape=(args.size, args.size, 3))
    rng = np.random.default_rng(0)
    functions = {}
    for batch in args.batches:
        images = rng.normal(0, 1, (batch, args.size, args.size, 3)).astype("float32")
        explain.grad_cam(model, images)  # warm-up
        model.predict(images, batch_size=batch, verbose=0)

        def explained(images=images):
            explain.grad_cam(model, images)
            return len(images)

        def predicted(images=images):
            model.predict(images, batch_size=len(images), verbose=0)
            return len(images)

        functions[f"grad_cam batch {batch}"] = explained
        functions[f"predict batch {batch}"] = predicted
    rates = interleaved(functions, args.rounds)
    print(f"{args.model} at {args.size}x{args.size}, {args.rounds} rounds: seconds per image")
    for name, values in rates.items():
        seconds = spread([1.0 / rate for rate in values])
        print(f"  {name:<20} {seconds['median']:.3f} s (min {seconds['min']:.3f}, "
              f"max {seconds['max']:.3f})")


if __name__ == "__main__":
    main()
