"""Test COCO mAP of RetinaNet on the digit boxes over seeds, trained from scratch as
``keras-resnet train --dataset digit_boxes`` does it.

The offline detection task (``keras_resnet.data`` "digit_boxes": 2,000 / 250 / 500 scenes of
64x64 with 0 to 4 digits of side 8 to 32 each, 10 classes) trained with torchvision's detection
recipe for a detector trained from scratch ("detection_from_scratch": Adam at 1e-3 per 16
images, x0.1 at 16/26 and 22/26 of the run after a linear warm-up from 0.001x), RetinaNet
version 1 (focal loss, L1 box loss) on the backbone (ResNet-18 unless ``--model``: the scenes
doubled to 128x128, anchors from 16 pixels), then scored on the test scenes with pycocotools'
COCOeval rules (``keras_resnet.coco_map``). Prints one line per seed, then the mean and the
range.

Commands:

    python -m benchmarks.detection_map                        # ResNet-18, seeds 0, 1, 2
    python -m benchmarks.detection_map --seeds 0 --epochs 2 --train-scenes 500
"""

import argparse
import tempfile

import numpy as np

FIGURES = ("map", "map_50", "map_75")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None,
                        help="the backbone (default: the run's, resnet18)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the run's (8)")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="default: the recipe's, scaled to the batch")
    parser.add_argument("--head-width", type=int, default=None,
                        help="the FPN's and subnets' width (default: the run's, 64; 32 on a CIFAR net)")
    parser.add_argument("--version", type=int, choices=(1, 2), default=1)
    parser.add_argument("--train-scenes", type=int, default=None,
                        help="train on the first N training scenes (default: all 2,000)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--precision", default="auto",
                        help="the run's precision (default auto: the device's fast path)")
    args = parser.parse_args(argv)
    import keras_resnet  # noqa: F401  (first, quietly: this package sets KERAS_RESNET_QUIET)
    # isort: split

    from benchmarks.hardware import describe, machine_description
    from keras_resnet import runs
    from keras_resnet.data.sources.digit_boxes import BOX_COUNTS

    if args.train_scenes:
        BOX_COUNTS.update(train=args.train_scenes)
    options = {"version": args.version}
    if args.head_width:
        options["head_width"] = args.head_width
    print(describe(machine_description("cpu")), flush=True)
    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as run_dir:
            result = runs.train(args.model, "digit_boxes", run_dir=run_dir, epochs=args.epochs,
                                learning_rate=args.learning_rate, model_options=options,
                                precision=args.precision,
                                seed=seed, export=False, verbose=0)
        test = result["test"]
        rows.append([test[name] for name in FIGURES] + [result["train_seconds"]])
        print(f"seed {seed}: test mAP {test['map']:.4f}, mAP@.50 {test['map_50']:.4f}, mAP@.75 "
              f"{test['map_75']:.4f}; {result['epochs']} epochs of {BOX_COUNTS['train']} scenes "
              f"in {result['train_seconds']:.0f} s (learning rate {result['learning_rate']:g}, "
              f"head width {result['detector']['head_width']})", flush=True)
    table = np.array(rows)
    seeds = ", ".join(map(str, args.seeds))
    print(f"mean (min-max) over seeds {seeds}: " + ", ".join(
        f"{name} {table[:, i].mean():.4f} ({table[:, i].min():.4f}-{table[:, i].max():.4f})"
        for i, name in enumerate(FIGURES)))


if __name__ == "__main__":
    main()
