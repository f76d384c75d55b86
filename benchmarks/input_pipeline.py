"""Images/s of the input pipelines alone next to the training throughput of the model they feed.

- CIFAR style (§4.2 augmentation at 32x32: 4-pixel padding, random crop, flip) on the bundled
  digits set, feeding ResNet-20.
- ImageNet style (§3.4 augmentation to 224x224: random shorter side in [256, 480], crop, flip,
  PCA colour) on an image folder made of scikit-learn's sample JPEGs (427x640), feeding ResNet-50
  (2 classes).

Three figures per pipeline, images/s, median and min-max over ``--rounds`` rounds:

- pipeline: ``keras_resnet.data.load(..., training=True)`` iterated alone (one iterator, a
  warm-up pass, then rounds of 50 CIFAR / 10 ImageNet batches), with no model running;
- model: training steps (``model.fit``) on one batch of that pipeline cached in memory, the
  model compiled by ``keras_resnet.training.compile_model`` (the paper's SGD recipe and the
  fast-path settings ``keras-resnet train`` uses), so the input costs nothing;
- fed: ``model.fit`` reading the pipeline itself (pipeline and model share the machine).

The two model figures are timed in interleaved rounds; the pipeline alone before them.

ratio = pipeline / model: how many times faster the pipeline makes images than the model
consumes them (above 1 the pipeline is not the bottleneck; on a small CPU both compete for the
same cores, which "fed" shows). With ``--device gpu`` the model runs on /GPU:0; the pipeline
always runs on the CPU.

Commands:

    python -m benchmarks.input_pipeline                   # about 3 min on a 2-core CPU
    python -m benchmarks.input_pipeline --cifar-batch 128 --imagenet-batch 32 --rounds 5
    python -m benchmarks.input_pipeline --device gpu --imagenet-batch 256 --cifar-batch 256

Results: a table on stdout and ``benchmarks/results/input_pipeline.json``.
"""

import argparse
import os
import shutil
import tempfile

from benchmarks import backends, feeds, hardware, report, timing


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    report.add_common_arguments(parser, "input_pipeline.json")
    parser.add_argument("--cifar-batch", type=int, default=128)
    parser.add_argument("--imagenet-batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pipelines", nargs="+", choices=["cifar", "imagenet"],
                        default=["cifar", "imagenet"])
    return parser.parse_args(argv)


def pipeline_rates(dataset, batches, rounds):
    """Images/s of ``rounds`` runs of ``batches`` batches from one iterator, after a warm-up.

    Timed alone, with no model running: a live iterator prefetches in background threads, so
    interleaving it with model steps would let it fill its buffer during the model's rounds
    (flattering the pipeline) and steal the model's cores.
    """
    import time

    iterator = iter(dataset.repeat())
    for _ in range(batches):  # warm-up: shuffle buffer, caches, thread pools
        next(iterator)
    rates = []
    for _ in range(rounds):
        start, images = time.perf_counter(), 0
        for _ in range(batches):
            images += int(next(iterator)[0].shape[0])
        rates.append(images / (time.perf_counter() - start))
    del iterator
    return rates


def sample_image_folder(root, copies):
    """``root/<class>/*.jpg``: scikit-learn's two sample photos, ``copies`` of each."""
    import sklearn.datasets

    images = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
    for name in ("china", "flower"):
        os.makedirs(os.path.join(root, name))
        for i in range(copies):
            shutil.copy(os.path.join(images, f"{name}.jpg"), os.path.join(root, name, f"{i}.jpg"))
    return root


def measure(name, dataset, model, pipeline_batches, model_steps, rounds, tf_device):
    """Pipeline alone; then the model on a cached batch and fed by the pipeline, interleaved."""
    import tensorflow as tf

    from keras_resnet import training

    print(f"  {name}: pipeline alone", flush=True)
    pipeline = timing.spread(pipeline_rates(dataset, pipeline_batches, rounds))
    x, y = next(iter(dataset))
    batch = int(x.shape[0])
    with tf.device(tf_device):
        training.compile_model(model, "cifar", batch)
        runners = {
            "model": feeds.fit_runner(model, feeds.cached_dataset(x, y), model_steps, batch),
            "fed": feeds.fit_runner(model, dataset.repeat(), model_steps, batch),
        }
        print(f"  {name}: {model.name} training, warm-up and {rounds} rounds", flush=True)
        for run in runners.values():
            run()
        rates = timing.interleaved(runners, rounds)
    stats = {key: timing.spread(values) for key, values in rates.items()}
    return {"pipeline": name, "batch": batch, "model": model.name,
            "pipeline_images_per_s": pipeline, "model_train_images_per_s": stats["model"],
            "fed_train_images_per_s": stats["fed"],
            "ratio": pipeline["median"] / stats["model"]["median"]}


def main():
    args = parse_args()
    tf_device = backends.select_device(args.device)
    backends.set_seeds(args.seed)
    import keras_resnet
    from keras_resnet import data

    machine = hardware.machine_description(args.device)
    print(hardware.describe(machine))
    rows = []
    if "cifar" in args.pipelines:
        cifar, _ = data.load("digits", "train", args.cifar_batch, training=True, seed=args.seed)
        rows.append(measure("CIFAR-style (digits, 32x32, §4.2)", cifar, keras_resnet.ResNet20(),
                            pipeline_batches=50, model_steps=3, rounds=args.rounds,
                            tf_device=tf_device))
    if "imagenet" in args.pipelines:
        with tempfile.TemporaryDirectory() as tmp:
            folder = sample_image_folder(os.path.join(tmp, "photos"), copies=64)
            imagenet, _ = data.load(folder, "train", args.imagenet_batch, training=True,
                                    seed=args.seed, augment="imagenet")
            rows.append(measure("ImageNet-style (JPEG folder, 224x224, §3.4)", imagenet,
                                keras_resnet.ResNet50(classes=2), pipeline_batches=10,
                                model_steps=1 if args.device == "cpu" else 10,
                                rounds=args.rounds, tf_device=tf_device))

    print(f"\nInput pipeline alone vs the model it feeds, images/s, median [min-max] of "
          f"{args.rounds} rounds")

    def cell(key):
        return lambda r: (f"{r[key]['median']:,.1f} [{r[key]['min']:,.1f}-{r[key]['max']:,.1f}]")

    report.print_table(rows, [
        ("pipeline", "pipeline", ""), ("batch", "batch", "d"),
        ("pipeline images/s", cell("pipeline_images_per_s"), ""), ("model", "model", ""),
        ("training images/s (cached)", cell("model_train_images_per_s"), ""),
        ("ratio", "ratio", ".1f"), ("fed by pipeline", cell("fed_train_images_per_s"), ""),
    ])
    report.write_json(args.json, machine, vars(args), rows)


if __name__ == "__main__":
    main()
