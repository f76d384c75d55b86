"""Measure the run-to-run spread behind the suite's bounds on trained models (not a test).

The suite's trained-model bounds (test_cli's 4-epoch ResNet-20, test_export's 8-epoch ResNet-8
and its quantized exports) are set from these figures with a margin: the same runs over several
seeds, since a seed moves a run about as much as another CPU's float rounding does.

    python tests/measure_spread.py --seeds 0 1 2 3 [--skip-resnet20] [--skip-resnet8]
        [--resnet20-epochs 4]
"""

import argparse
import json
import os
import tempfile

from keras_resnet import logs

logs.quiet()

import numpy as np  # noqa: E402

from keras_resnet import evaluation, export, runs  # noqa: E402


def resnet20(seed, folder, epochs=4):
    """The main job's defaults but ``epochs``: single-crop and 10-crop test top-1."""
    run_dir = os.path.join(folder, f"resnet20-{seed}")
    result = runs.train("resnet20", "digits", run_dir=run_dir, epochs=epochs, seed=seed, export=False,
                        verbose=0)
    ten_crop = evaluation.evaluate(os.path.join(run_dir, "model.keras"), "digits", ten_crop=True)
    return {"top1": result["test"]["top1"], "ten_crop_top1": ten_crop["top1"]}


def resnet8(seed, folder):
    """test_export's ResNet-8, 8 epochs: test top-1 and every quantized file's agreement."""
    run_dir = os.path.join(folder, f"resnet8-{seed}")
    result = runs.train("resnet8", "digits", run_dir=run_dir, epochs=8, seed=seed, export=False, verbose=0)
    exported = export.export_run(run_dir, os.path.join(folder, f"exports-{seed}"), export.FORMATS,
                                 (None, "float16", "dynamic", "int8", "int8_full"))
    agreement = {row["file"]: row["top1_agreement"] for row in exported["parity"]
                 if row["precision"] == "float32"}
    return {"top1": result["test"]["top1"], "min_quantized_agreement": min(agreement.values()),
            "agreement": agreement}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--skip-resnet20", action="store_true")
    parser.add_argument("--skip-resnet8", action="store_true")
    parser.add_argument("--resnet20-epochs", type=int, default=4, help="tests/test_cli.py's DEFAULT_RUN_EPOCHS")
    args = parser.parse_args()
    figures = {"resnet8": {}, "resnet20": {}}
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            if not args.skip_resnet8:
                figures["resnet8"][seed] = resnet8(seed, folder)
                print("resnet8", seed, json.dumps(figures["resnet8"][seed]), flush=True)
            if not args.skip_resnet20:
                figures["resnet20"][seed] = resnet20(seed, folder, args.resnet20_epochs)
                print("resnet20", seed, json.dumps(figures["resnet20"][seed]), flush=True)
    for model, by_seed in figures.items():
        for key in ("top1", "ten_crop_top1", "min_quantized_agreement"):
            values = [row[key] for row in by_seed.values() if key in row]
            if values:
                print(f"{model} {key}: min {min(values):.4f} mean {np.mean(values):.4f} "
                      f"max {max(values):.4f} over seeds {list(by_seed)}")


if __name__ == "__main__":
    main()
