"""mAP and F1 of the default multi-label run, ``keras-resnet train --dataset digit_canvases``,
over seeds.

The offline multi-label task (``keras_resnet.data.digit_canvases``: 3000 / 500 / 1000 canvases
of two or three digits each) trained as the command line does it: ResNet-20 with a 10-way
sigmoid head and binary cross-entropy, the paper's CIFAR recipe scaled to the run (SGD 0.1 per
128 images, momentum 0.9, weight decay 1e-4, the step schedule at half and three quarters of
the epochs, §4.2's padding and crop), 30 epochs at batch 64. Each class's threshold is chosen
on the validation canvases (best F1); the test canvases are scored at those thresholds and at
0.5. Prints one line per seed, then the mean and the range.

Commands:

    python -m benchmarks.multilabel                      # seeds 0, 1, 2
    python -m benchmarks.multilabel --seeds 0 --epochs 10
"""

import argparse
import tempfile

import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="default: the run's (30)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    import keras_resnet  # noqa: F401  (first, quietly: this package sets KERAS_RESNET_QUIET)
    # isort: split

    import keras

    from keras_resnet import data, evaluation, multilabel, preprocessing, runs

    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as run_dir:
            result = runs.train("resnet20", "digit_canvases", run_dir=run_dir, epochs=args.epochs,
                                seed=seed, export=False, verbose=0)
            model = keras.saving.load_model(f"{run_dir}/model.keras")
        test, _ = data.load("digit_canvases", "test", 500, preprocessing=preprocessing.of(model))
        scores, labels = evaluation.scores_and_labels(model, test)
        at_half = multilabel.multilabel_report(labels, scores, 0.5)
        row = (result["test"]["mAP"], result["test"]["f1_macro"], result["test"]["f1_micro"],
               at_half["f1_macro"], result["train_seconds"])
        rows.append(row)
        print(f"seed {seed}: test mAP {row[0]:.4f}, F1 macro {row[1]:.4f} / micro {row[2]:.4f} at "
              f"the validation thresholds (macro at 0.5: {row[3]:.4f}); {result['epochs']} epochs "
              f"in {row[4]:.0f} s", flush=True)
    table = np.array(rows)
    names = ("mAP", "F1 macro", "F1 micro", "F1 macro at 0.5")
    print("mean (min-max) over seeds " + ", ".join(map(str, args.seeds)) + ": " + "; ".join(
        f"{name} {table[:, k].mean():.4f} ({table[:, k].min():.4f}-{table[:, k].max():.4f})"
        for k, name in enumerate(names)))


if __name__ == "__main__":
    main()
