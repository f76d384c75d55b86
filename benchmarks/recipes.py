"""The paper's recipe against the modern ones on the offline digits, and each ingredient of
torchvision's recipe removed in turn: test top-1 over seeds, with the spread.

Every row is ``keras-resnet train --model resnet20 --dataset digits --recipe NAME [--set ...]``
at the same length (``--epochs``, default 20, batch 32): the recipes scaled to the data keep
their fractions of the run (warm-up, EMA horizon), their learning rate at batch 32 (linear,
or square-root for LAMB) and everything else as published. Prints a Markdown table; with
``--json PATH`` also writes every run's figures, after each run.

Commands:

    python -m benchmarks.recipes                         # all rows, seeds 0 1 2
    python -m benchmarks.recipes --rows paper torchvision_v2 --seeds 0
    python -m benchmarks.recipes --rows paper torchvision_v2 --no-ablations --epochs 60
"""

import argparse
import json
import tempfile
import time

import numpy as np

# (row name, recipe, overrides): the recipes, then torchvision's recipe without one ingredient.
ROWS = [
    ("paper (§4.2)", "paper", {}),
    ("torchvision_v2", "torchvision_v2", {}),
    ("rsb_a1", "rsb_a1", {}),
    ("rsb_a2", "rsb_a2", {}),
    ("rsb_a3", "rsb_a3", {}),
    ("torchvision_v2 - label smoothing", "torchvision_v2", {"label_smoothing": 0.0}),
    ("torchvision_v2 - MixUp/CutMix", "torchvision_v2", {"mixup_alpha": 0.0, "cutmix_alpha": 0.0}),
    ("torchvision_v2 - TrivialAugment", "torchvision_v2", {"auto_augment": None}),
    ("torchvision_v2 - random erasing", "torchvision_v2", {"random_erasing": 0.0}),
    ("torchvision_v2 - EMA", "torchvision_v2", {"ema": False}),
    ("torchvision_v2 - repeated augmentation", "torchvision_v2", {"repeated_augmentation": 1}),
    ("torchvision_v2 - FixRes (train at full size)", "torchvision_v2", {"train_size_fraction": 1.0}),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", default=None,
                        help="recipe names (every row of those recipes); default: all rows")
    parser.add_argument("--no-ablations", action="store_true",
                        help="only the recipes as they are, no ingredient removed")
    parser.add_argument("--json", default=None, help="write every run's figures here")
    args = parser.parse_args(argv)
    import keras_resnet  # noqa: F401  (first, quietly: this package sets KERAS_RESNET_QUIET)
    # isort: split

    from keras_resnet import runs

    rows = [row for row in ROWS if (args.rows is None or row[1] in args.rows)
            and not (args.no_ablations and row[2])]
    results = []
    for label, recipe, overrides in rows:
        for seed in args.seeds:
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as run_dir:
                result = runs.train("resnet20", "digits", run_dir=run_dir, epochs=args.epochs,
                                    recipe=recipe, recipe_overrides=overrides, seed=seed,
                                    export=False, verbose=0)
            results.append({"row": label, "recipe": recipe, "overrides": overrides, "seed": seed,
                            "top1": result["test"]["top1"],
                            "seconds": round(time.perf_counter() - started, 1)})
            print(f"{label}, seed {seed}: test top-1 {result['test']['top1']:.4f} "
                  f"({results[-1]['seconds']:.0f} s)", flush=True)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(results, f, indent=1)
    print(f"\n| recipe (ResNet-20, digits, {args.epochs} epochs) | test top-1, mean | "
          f"min-max over seeds {', '.join(map(str, args.seeds))} |")
    print("| --- | --- | --- |")
    for label, _, _ in rows:
        top1 = np.array([r["top1"] for r in results if r["row"] == label]) * 100
        print(f"| {label} | {top1.mean():.2f}% | {top1.min():.2f}-{top1.max():.2f}% |")


if __name__ == "__main__":
    main()
