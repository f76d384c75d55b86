"""Does time per image grow in proportion to the work? Seconds per G multiply-adds across depths.

For the ImageNet ResNets 18/34/50/101/152 (at ``--image-size``) and the CIFAR ResNets
20/32/44/56/110 (at 32x32) it measures, in float32 on one device:

- training: images/s of ``model.fit`` on one cached in-memory batch (as
  ``train_throughput.py``'s float32 mode: SGD momentum, no XLA, one step per execution);
- inference: images/s of ``model.predict_on_batch`` on the same batch.

and divides the time per image by the forward multiply-adds of one image
(``keras_resnet.count_multiply_adds``: convolutions and the classifier, Table 1's "FLOPs"),
giving seconds per G multiply-add (s/GMAC; training counts the forward multiply-adds only, so
its s/GMAC is about 3x inference's when the backward pass costs twice the forward). Constant
s/GMAC along a family means cost grows in proportion to work; the "vs first" column is each
model's s/GMAC over the shallowest model's of its family. Models of one family are timed in
interleaved rounds (the order rotates each round), training and inference alike.

Prints a table, writes ``benchmarks/results/cost_vs_depth.json`` and a plot
``benchmarks/results/cost_vs_depth.png`` (left: ms per image against G multiply-adds, log-log,
with a line of slope 1 through the shallowest model; right: s/GMAC against depth).

Commands:

    python -m benchmarks.cost_vs_depth        # default, about 6-7 min on a 2-core CPU:
        # ImageNet depths at 224x224 (batch 8), CIFAR depths at 32x32 (batch 64), 3 rounds
    python -m benchmarks.cost_vs_depth --rounds 5 --steps 4 --batch-size 16   # steadier figures
        # (about 15 min on a 2-core CPU)
    python -m benchmarks.cost_vs_depth --image-size 112                  # quicker (about 4 min)
    python -m benchmarks.cost_vs_depth --families cifar                  # CIFAR only (1-2 min)
    python -m benchmarks.cost_vs_depth --device gpu       # GPU: 224x224, batch 256 for both families
"""

import argparse
import gc
import os

from benchmarks import backends, feeds, hardware, report, timing

DEPTHS = {"imagenet": [18, 34, 50, 101, 152], "cifar": [20, 32, 44, 56, 110]}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    report.add_common_arguments(parser, "cost_vs_depth.json")
    parser.add_argument("--families", nargs="+", choices=list(DEPTHS), default=list(DEPTHS))
    parser.add_argument("--imagenet-depths", nargs="+", type=int, default=DEPTHS["imagenet"])
    parser.add_argument("--cifar-depths", nargs="+", type=int, default=DEPTHS["cifar"])
    parser.add_argument("--image-size", type=int, default=None,
                        help="ImageNet models' input side (default: 224, as Table 1)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="ImageNet models' batch (default: 8 on CPU, 256 on GPU)")
    parser.add_argument("--cifar-batch-size", type=int, default=None,
                        help="CIFAR models' batch (default: 64 on CPU, 256 on GPU)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None,
                        help="batches per round (default: 2 on CPU, 20 on GPU)")
    parser.add_argument("--plot", default=os.path.join(report.RESULTS_DIR, "cost_vs_depth.png"))
    return parser.parse_args(argv)


def predict_runner(model, x, steps):
    def run():
        for _ in range(steps):
            model.predict_on_batch(x)
        return steps * len(x)

    return run


def measure_family(args, family, depths, tf_device):
    import keras
    import tensorflow as tf

    import keras_resnet

    cifar = family == "cifar"
    size = 32 if cifar else args.image_size
    batch = args.cifar_batch_size if cifar else args.batch_size
    classes = 10 if cifar else 1000
    x, y = feeds.random_batch(batch, size, classes, args.seed)
    dataset = feeds.cached_dataset(x, y)
    models, macs = {}, {}
    with tf.device(tf_device):
        for depth in depths:
            name = f"resnet{depth}"
            keras.utils.set_random_seed(args.seed)
            model = keras_resnet.get_model(name, input_shape=(size, size, 3), classes=classes)
            feeds.compile_for_benchmark(model)
            macs[name] = keras_resnet.count_multiply_adds(model)
            print(f"  warm-up: {name} ({size}x{size}, batch {batch})", flush=True)
            feeds.fit_runner(model, dataset, 1, batch)()
            model.predict_on_batch(x)
            models[name] = model
        runners = {}
        for name, model in models.items():
            runners[(name, "train")] = feeds.fit_runner(model, dataset, args.steps, batch)
            runners[(name, "inference")] = predict_runner(model, x, args.steps)
        rates = timing.interleaved(runners, args.rounds)
    rows = []
    for depth in depths:
        name = f"resnet{depth}"
        row = {"model": name, "family": family, "depth": depth, "input": f"{size}x{size}",
               "batch": batch, "multiply_adds": macs[name]}
        for kind in ("train", "inference"):
            stats = timing.spread(rates[(name, kind)])
            row[f"{kind}_images_per_s"] = stats
            row[f"{kind}_ms_per_image"] = 1000 / stats["median"]
            row[f"{kind}_s_per_gmac"] = 1 / stats["median"] / (macs[name] / 1e9)
            # spread of s/GMAC from the fastest and slowest rounds
            row[f"{kind}_s_per_gmac_range"] = [1 / stats["max"] / (macs[name] / 1e9),
                                               1 / stats["min"] / (macs[name] / 1e9)]
        rows.append(row)
    for kind in ("train", "inference"):
        first = rows[0][f"{kind}_s_per_gmac"]
        for row in rows:
            row[f"{kind}_vs_first"] = row[f"{kind}_s_per_gmac"] / first
    del models
    keras.backend.clear_session()
    gc.collect()
    return rows


def plot(rows, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    styles = {("imagenet", "train"): ("C0", "o-"), ("imagenet", "inference"): ("C0", "s--"),
              ("cifar", "train"): ("C1", "o-"), ("cifar", "inference"): ("C1", "s--")}
    for family in ("imagenet", "cifar"):
        family_rows = [r for r in rows if r["family"] == family]
        if not family_rows:
            continue
        gmacs = [r["multiply_adds"] / 1e9 for r in family_rows]
        for kind in ("train", "inference"):
            color, style = styles[(family, kind)]
            label = f"{family} {family_rows[0]['input']}, {kind}"
            ms = [r[f"{kind}_ms_per_image"] for r in family_rows]
            left.plot(gmacs, ms, style, color=color, label=label)
            left.plot([gmacs[0], gmacs[-1]], [ms[0], ms[0] * gmacs[-1] / gmacs[0]], ":",
                      color=color, linewidth=1)
            right.plot([r["depth"] for r in family_rows],
                       [r[f"{kind}_s_per_gmac"] for r in family_rows], style, color=color,
                       label=label)
            for r, g, m in zip(family_rows, gmacs, ms):
                left.annotate(str(r["depth"]), (g, m), textcoords="offset points",
                              xytext=(4, 4), fontsize=7)
    left.set(xscale="log", yscale="log", xlabel="forward G multiply-adds per image",
             ylabel="ms per image", title="time per image vs work (dotted: proportional)")
    right.set(xscale="log", xlabel="depth (layers)", ylabel="seconds per G multiply-add",
              title="cost per unit of work vs depth")
    right.set_ylim(bottom=0)
    depths = sorted({r["depth"] for r in rows})
    right.set_xticks(depths, [str(d) for d in depths])
    right.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    for axis in (left.xaxis, left.yaxis):  # ticks at 1, 2, 5 x 10^k, plain numbers
        axis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for axis in (left, right):
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    print(f"wrote {os.path.relpath(path)}")


def main():
    args = parse_args()
    tf_device = backends.select_device(args.device)
    backends.set_seeds(args.seed)
    gpu = args.device == "gpu"
    args.image_size = args.image_size or 224
    args.batch_size = args.batch_size or (256 if gpu else 8)
    args.cifar_batch_size = args.cifar_batch_size or (256 if gpu else 64)
    args.steps = args.steps or (20 if gpu else 2)
    from keras_resnet.models import parse_model_name

    depths = {"imagenet": args.imagenet_depths, "cifar": args.cifar_depths}
    for family in args.families:
        for depth in depths[family]:
            try:
                found = parse_model_name(f"resnet{depth}")[0]
            except ValueError as error:
                raise SystemExit(f"--{family}-depths: {error}") from None
            if found != family:
                raise SystemExit(f"--{family}-depths: resnet{depth} is a {found} model")
    machine = hardware.machine_description(args.device)
    print(hardware.describe(machine))
    rows = []
    for family in args.families:
        print(f"\n{family}: depths {' '.join(map(str, depths[family]))}", flush=True)
        rows += measure_family(args, family, depths[family], tf_device)

    print(f"\nTime per image / forward multiply-adds, float32, {args.rounds} interleaved rounds "
          f"of {args.steps} batches (s/GMAC: seconds per 1e9 forward multiply-adds)")
    report.print_table(rows, [
        ("model", "model", ""), ("input", "input", ""), ("batch", "batch", "d"),
        ("fwd GMACs", lambda r: r["multiply_adds"] / 1e9, ".3f"),
        ("train ms/img", "train_ms_per_image", ".2f"),
        ("train s/GMAC", "train_s_per_gmac", ".4f"), ("vs first", "train_vs_first", ".2f"),
        ("infer ms/img", "inference_ms_per_image", ".2f"),
        ("infer s/GMAC", "inference_s_per_gmac", ".4f"), ("vs first", "inference_vs_first", ".2f"),
    ])
    title = (f"{hardware.describe(machine)}; float32, ImageNet batch {args.batch_size}, "
             f"CIFAR batch {args.cifar_batch_size}")
    plot(rows, args.plot, title)
    report.write_json(args.json, machine, vars(args), rows)


if __name__ == "__main__":
    main()
