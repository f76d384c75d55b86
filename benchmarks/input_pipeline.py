"""Images/s of the input pipelines alone next to the training throughput of the model they feed.

- CIFAR style (§4.2 augmentation at 32x32) on the bundled digits set, feeding ResNet-20.
- ImageNet style (§3.4 augmentation to 224x224: random shorter side in [256, 480], crop, flip,
  PCA colour) on an image folder made of scikit-learn's sample JPEGs (427x640), feeding ResNet-50.

    python benchmarks/input_pipeline.py [--imagenet-batch 32] [--cifar-batch 128]
"""

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_resnet  # noqa: E402
from keras_resnet import data, training  # noqa: E402


def pipeline_rate(dataset, batches, rounds):
    """Median images/s over ``rounds`` passes of ``batches`` batches (after one warm-up pass)."""
    iterator = iter(dataset.repeat())
    for _ in range(batches):
        next(iterator)
    rates = []
    for _ in range(rounds):
        start, images = time.perf_counter(), 0
        for _ in range(batches):
            images += int(next(iterator)[0].shape[0])
        rates.append(images / (time.perf_counter() - start))
    return statistics.median(rates)


def model_rate(model, dataset, steps, rounds):
    """Median training images/s of ``model`` on batches already in memory."""
    x, y = next(iter(dataset))
    training.compile_model(model, "cifar", int(x.shape[0]))
    model.train_on_batch(x, y)
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        rates.append(steps * int(x.shape[0]) / (time.perf_counter() - start))
    return statistics.median(rates)


def sample_image_folder(root, copies):
    """``root/<class>/*.jpg``: scikit-learn's two sample photos, ``copies`` of each."""
    import sklearn.datasets

    images = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
    for name in ("china", "flower"):
        os.makedirs(os.path.join(root, name))
        for i in range(copies):
            shutil.copy(os.path.join(images, f"{name}.jpg"), os.path.join(root, name, f"{i}.jpg"))
    return root


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar-batch", type=int, default=128)
    parser.add_argument("--imagenet-batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default="benchmarks/results/input_pipeline.json")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    rows = []

    cifar, _ = data.load("digits", "train", args.cifar_batch, training=True, seed=0)
    rows.append(("CIFAR-style (digits, 32x32)", "resnet20",
                 pipeline_rate(cifar, 10, args.rounds),
                 model_rate(keras_resnet.ResNet20(), cifar, 3, args.rounds)))

    with tempfile.TemporaryDirectory() as tmp:
        folder = sample_image_folder(os.path.join(tmp, "photos"), copies=64)
        imagenet, _ = data.load(folder, "train", args.imagenet_batch, training=True, seed=0, augment="imagenet")
        rows.append(("ImageNet-style (JPEG folder, 224x224)", "resnet50",
                     pipeline_rate(imagenet, 3, args.rounds),
                     model_rate(keras_resnet.ResNet50(classes=2), imagenet, 1, args.rounds)))

    print(f"{'pipeline':40s} {'pipeline img/s':>14s} {'model':>9s} {'train img/s':>11s} {'ratio':>7s}")
    results = []
    for name, model, pipeline, trained in rows:
        print(f"{name:40s} {pipeline:14.1f} {model:>9s} {trained:11.1f} {pipeline / trained:6.1f}x")
        results.append({"pipeline": name, "pipeline_images_per_s": pipeline, "model": model,
                        "model_train_images_per_s": trained, "ratio": pipeline / trained})
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"cpus": os.cpu_count(), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
