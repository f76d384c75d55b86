"""mAP and F1 of a ResNet-20 trained for multi-label classification on the digit canvases.

The offline multi-label task (``keras_resnet.multilabel.digit_canvases``: 3000 / 500 / 1000
canvases of two or three digits each): ResNet-20 with a 10-way sigmoid head, binary
cross-entropy, the paper's SGD (0.1, momentum 0.9, weight decay 1e-4 on the kernels), batch
128, the learning rate divided by 10 at half and three quarters of the epochs, no augmentation.
Thresholds per class are chosen on the validation canvases (best F1), then the test canvases
are scored: mAP, F1 at those thresholds and at 0.5, per ``--seeds``.

Commands:

    python -m benchmarks.multilabel                      # 20 epochs, seed 0
    python -m benchmarks.multilabel --epochs 30 --seeds 0 1 2
"""

import argparse
import time

import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args(argv)
    import keras_resnet  # first, quietly: this package sets KERAS_RESNET_QUIET

    import keras

    from keras_resnet import multilabel

    splits = {split: multilabel.digit_canvases(split)[:2] for split in ("train", "validation", "test")}
    inputs = {split: images.astype("float32") / 255.0 for split, (images, _) in splits.items()}
    for seed in args.seeds:
        keras.utils.set_random_seed(seed)
        model = keras_resnet.ResNet20(classes=10, classifier_activation="sigmoid")
        steps = args.epochs * int(np.ceil(len(inputs["train"]) / 128))
        schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
            [steps // 2, steps * 3 // 4], [0.1, 0.01, 0.001])
        model.compile(keras.optimizers.SGD(schedule, momentum=0.9), keras.losses.BinaryCrossentropy())
        started = time.perf_counter()
        model.fit(inputs["train"], splits["train"][1].astype("float32"), batch_size=128,
                  epochs=args.epochs, verbose=0, shuffle=True)
        seconds = time.perf_counter() - started
        scores = {split: model.predict(inputs[split], verbose=0) for split in ("validation", "test")}
        thresholds = multilabel.choose_thresholds(splits["validation"][1], scores["validation"])
        tuned = multilabel.multilabel_report(splits["test"][1], scores["test"], thresholds)
        plain = multilabel.multilabel_report(splits["test"][1], scores["test"], 0.5)
        print(f"seed {seed}: test mAP {tuned['mAP']:.4f}, F1 macro {tuned['f1_macro']:.4f} / micro "
              f"{tuned['f1_micro']:.4f} at the validation thresholds (at 0.5: {plain['f1_macro']:.4f} / "
              f"{plain['f1_micro']:.4f}); {args.epochs} epochs in {seconds:.0f} s")


if __name__ == "__main__":
    main()
