"""What RetinaNet's post-processing costs: images/s of RetinaNet with and without it.

Inference images/s of RetinaNet on one ResNet with its raw outputs (the network alone) and
with its detections (the network, then torchvision's post-processing in ``keras.ops``), and
the post-processing's share of the time per image.

Two views of one RetinaNet (``keras_resnet.RetinaNet``, random weights, 91 classes as
torchvision's COCO models), sharing their layers: ``raw outputs`` (``raw_outputs=True``: class
logits, box deltas and anchors of every anchor) and ``with post-processing``
(``keras_resnet.heads.detectors.detections_model``: per level the scores above the threshold,
the best ``topk_candidates`` (1000), their boxes decoded and clipped, then class-aware greedy
NMS at IoU 0.5 keeping at most 300).

The post-processing's graph has fixed shapes, so its cost depends on the scores in one way
only: its NMS loop runs once per detection kept and stops when no candidate is left. The row
runs at ``--score-threshold`` 0.0 by default so that it does its full work whatever the
weights: every level hands its best 1000 pairs to NMS (5,000 at 512x512, where P7's 4x4 cells
hold 13,104 pairs) and NMS keeps its 300, the most a detector's post-processing can do. At the
default threshold of 0.05 the count would depend on the random weights: RetinaNet's
initialisation aims every score at the prior 0.01 of the class logits' bias (§3.3), under 0.05,
but an untrained ResNet's features are not normalised (batch norm's moving statistics are
still 0 and 1), its logits saturate, and at ResNet-50 512x512 half the pairs score above 0.05.
The printed lines give the threshold and the detections NMS kept.

The two models run in interleaved rounds in one process (a drift of the machine hits both
alike, the order rotating), each round one untimed call per model then ``--calls`` timed calls
of ``model.predict`` on ``--batch`` random images; the figure is the median images/s over the
rounds. The share is ``1 - (images/s with) / (images/s raw)``: the post-processing's part of
the time per image.

Commands:

    python -m benchmarks.detection_speed                  # ResNet-50, 512x512, batch 1
    python -m benchmarks.detection_speed --depth 18 --size 256 --batch 4 --rounds 7
"""

import argparse
import time

import numpy as np

from benchmarks.hardware import describe, machine_description
from benchmarks.timing import spread

CLASSES = 91  # torchvision's COCO indices
RAW, DETECTIONS = "raw outputs", "with post-processing"


def build_models(keras_resnet, depth, size, version, score_threshold):
    """``{row name: model}``: one RetinaNet's raw outputs and its detections (layers shared)."""
    from keras_resnet.heads import detectors

    raw = keras_resnet.RetinaNet(f"resnet{depth}", classes=CLASSES, version=version,
                                 raw_outputs=True, input_shape=(size, size, 3))
    return {RAW: raw,
            DETECTIONS: detectors.detections_model(raw, score_threshold=score_threshold)}


def level_anchors(model):
    """``{level: anchors}`` of RetinaNet ``model`` at its fixed input size (P3 .. P7)."""
    return {level: model.get_layer(f"anchors{level}").output.shape[1] for level in range(3, 8)}


def time_models(models, images, rounds, calls):
    """``({row name: [images/s per round]}, detections per image of the last call)``:
    interleaved rounds, the order rotating."""
    names = list(models)
    rates = {name: [] for name in names}
    found = None
    for round_index in range(rounds):
        print(f"  round {round_index + 1}/{rounds}", flush=True)
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            model = models[name]
            model.predict(images, batch_size=len(images), verbose=0)  # untimed: re-warm
            start = time.perf_counter()
            for _ in range(calls):
                outputs = model.predict(images, batch_size=len(images), verbose=0)
            rates[name].append(calls * len(images) / (time.perf_counter() - start))
            if name == DETECTIONS:
                found = float(np.mean(outputs["num_detections"]))
    return rates, found


def report(args, models, rates, found):
    """Print the machine line, the settings, the table and the post-processing's share."""
    import keras_resnet

    anchors = level_anchors(models[RAW])
    print(f"\n{describe(machine_description('cpu'))}")
    print(f"RetinaNet version {args.version} on ResNet-{args.depth} (random weights), "
          f"{args.size}x{args.size}, batch {args.batch}, {CLASSES} classes, {args.rounds} "
          f"interleaved rounds of {args.calls} calls")
    print(f"anchors: {sum(anchors.values()):,} ("
          + ", ".join(f"P{level} {count:,}" for level, count in anchors.items()) + ")")
    topk = models[DETECTIONS].get_layer("detections").topk_candidates
    candidates = sum(min(topk, count * CLASSES) for count in anchors.values())
    print(f"post-processing at score threshold {args.score_threshold} (the model's default "
          f"0.05): up to {candidates:,} candidates per image "
          f"(the best {topk} of each level), {found:.0f} detections kept by NMS")
    print(f"{'model':<24}{'GMACs':>8}{'images/s':>10}{'(IQR)':>8}{'ms/image':>10}")
    macs = keras_resnet.count_multiply_adds(models[RAW]) / 1e9
    for name in models:
        stats = spread(rates[name])
        print(f"{name:<24}{macs:>8.1f}{stats['median']:>10.2f}{stats['iqr']:>8.2f}"
              f"{1000 / stats['median']:>10.1f}")
    raw, with_post = (spread(rates[name])["median"] for name in (RAW, DETECTIONS))
    print(f"post-processing: {1 - with_post / raw:.1%} of the time per image "
          f"({1000 / with_post - 1000 / raw:.1f} ms; GMACs count the network alone)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--version", type=int, choices=(1, 2), default=1,
                        help="RetinaNet's version (2: GroupNorm subnets, P6 from C5)")
    parser.add_argument("--score-threshold", type=float, default=0.0,
                        help="the post-processing row's score threshold (default 0.0: its full "
                             "work whatever the weights; the model's own default is 0.05)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2, help="predict calls per model per round")
    args = parser.parse_args(argv)
    import keras_resnet  # quietly: this package sets KERAS_RESNET_QUIET
    # isort: split

    images = np.random.default_rng(0).uniform(
        0, 255, (args.batch, args.size, args.size, 3)).astype("float32")
    models = build_models(keras_resnet, args.depth, args.size, args.version,
                          args.score_threshold)
    rates, found = time_models(models, images, args.rounds, args.calls)
    report(args, models, rates, found)


if __name__ == "__main__":
    main()
