"""Test mIoU of DeepLabV3 on the digit scenes over seeds: a backbone trained from scratch
against the same head on an untrained, frozen backbone.

The offline segmentation task (``keras_resnet.data`` "digit_scenes": 2,000 / 250 / 500 scenes
of 64x64 with two or three digits each, 11 classes with the background) trained as
``keras-resnet train --dataset digit_scenes --head deeplabv3`` does it: torchvision's
segmentation recipe (SGD momentum 0.9, coupled weight decay 1e-4, the polynomial schedule of
power 0.9, sparse cross-entropy), the learning rate scaled from 0.02 per 32 images unless
``--learning-rate`` sets it. The frozen row builds the same model, marks every backbone layer
untrainable (its batch norms then normalise with their initial statistics) and trains the
head alone with the same recipe, epochs and seed: what the head makes of random features.
Both are scored on the test scenes (mIoU over the 11 classes, pixel accuracy). Prints one line
per seed and row, then the mean and the range.

Commands:

    python -m benchmarks.segmentation_miou                       # ResNet-20, seeds 0, 1, 2
    python -m benchmarks.segmentation_miou --seeds 0 --epochs 4
"""

import argparse
import tempfile

import numpy as np


def frozen_segmenter(keras_resnet, head, model, info):
    """``head`` on a fresh ``model`` backbone for the scenes, every backbone layer frozen."""
    from keras_resnet.train import build

    segmenter = build.segmentation_model(model, info, {}, head)
    head_layers = {layer.name for layer in segmenter.layers
                   if layer.name.startswith(("aspp", "deeplab_head", "fcn_head", "decoder"))
                   or layer.name in ("out", "aux")}
    for layer in segmenter.layers:
        if layer.name not in head_layers:
            layer.trainable = False
    return segmenter


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20", help="the backbone (default resnet20)")
    parser.add_argument("--head", default="deeplabv3", choices=("fcn", "deeplabv3", "deeplabv3plus"))
    parser.add_argument("--epochs", type=int, default=None, help="default: the run's (12)")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="default: the recipe's, scaled to the batch")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    import keras_resnet  # noqa: F401  (first, quietly: this package sets KERAS_RESNET_QUIET)
    # isort: split

    import keras

    from benchmarks.hardware import describe, machine_description
    from keras_resnet import data, runs

    info = data.segmentation.load_segmentation("digit_scenes", "test", 16)[1]
    print(describe(machine_description("cpu")), flush=True)
    rows = {"trained": [], "frozen": []}
    for seed in args.seeds:
        for row in rows:
            keras.utils.set_random_seed(seed)  # the frozen backbone's weights, as a run's
            model = args.model if row == "trained" else frozen_segmenter(
                keras_resnet, args.head, args.model, info)
            with tempfile.TemporaryDirectory() as run_dir:
                result = runs.train(model, "digit_scenes", run_dir=run_dir, head=args.head,
                                    epochs=args.epochs, learning_rate=args.learning_rate,
                                    seed=seed, export=False, verbose=0)
            test = result["test"]
            rows[row].append((test["miou"], test["pixel_accuracy"], result["train_seconds"]))
            print(f"seed {seed}, {row} backbone: test mIoU {test['miou']:.4f}, pixel accuracy "
                  f"{test['pixel_accuracy']:.4f}; {result['epochs']} epochs in "
                  f"{result['train_seconds']:.0f} s", flush=True)
    seeds = ", ".join(map(str, args.seeds))
    for row, figures in rows.items():
        table = np.array(figures)
        print(f"{row} backbone, mean (min-max) over seeds {seeds}: mIoU {table[:, 0].mean():.4f} "
              f"({table[:, 0].min():.4f}-{table[:, 0].max():.4f}), pixel accuracy "
              f"{table[:, 1].mean():.4f} ({table[:, 1].min():.4f}-{table[:, 1].max():.4f})")


if __name__ == "__main__":
    main()
