"""What RetinaNet's post-processing costs: images/s of RetinaNet with and without it.

Inference images/s of RetinaNet on one ResNet with its raw outputs (the network alone) and
with its detections (the network, then torchvision's post-processing in ``keras.ops``), and
the post-processing's share of the time per image.

Three rows, from one RetinaNet (``keras_resnet.RetinaNet``, random weights, 91 classes as
torchvision's COCO models): ``raw outputs`` (``raw_outputs=True``: class logits, box deltas
and anchors of every anchor), ``with post-processing``
(``keras_resnet.heads.detectors.detections_model`` on the same layers: per level the scores
above the threshold, the best ``topk_candidates`` (1000), their boxes decoded and clipped, then
class-aware greedy NMS at IoU 0.5 keeping at most 300), and ``post-processing alone`` (that
layer on the network's outputs of each level, computed once beforehand). The difference of
the first two rows is the post-processing's cost as a user pays it, but it is a small
difference of two large, noisy times; the third row measures it directly.

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

The rows run in interleaved rounds in one process (a drift of the machine hits all alike, the
order rotating), each round one untimed call per model then ``--calls`` timed calls of
``model.predict_on_batch`` on ``--batch`` random images (one compiled step: ``predict``'s own
set-up, tens of milliseconds a call on a 2-core CPU, would weigh on the post-processing
alone); the figure is the median images/s over the rounds. The share printed is the
post-processing alone's time per image over that of the model with post-processing.

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
LEVELS = (3, 4, 5, 6, 7)  # RetinaNet's pyramid, P3 .. P7
RAW, DETECTIONS, ALONE = "raw outputs", "with post-processing", "post-processing alone"


def build_models(keras_resnet, depth, size, version, score_threshold):
    """``{row name: model}``: one RetinaNet's raw outputs and its detections (layers shared),
    and its post-processing alone, from the network's outputs per level."""
    from keras_resnet.heads import detectors

    raw = keras_resnet.RetinaNet(f"resnet{depth}", classes=CLASSES, version=version,
                                 raw_outputs=True, input_shape=(size, size, 3))
    detections = detectors.detections_model(raw, score_threshold=score_threshold)
    return {RAW: raw, DETECTIONS: detections, ALONE: postprocessing_alone(detections)}


def level_outputs(model):
    """RetinaNet ``model``'s class logits, box deltas and anchors of each level, in the order
    its post-processing layer ("detections") reads them."""
    return [model.get_layer(f"{kind}{level}").output
            for kind in ("cls_flat", "box_flat", "anchors") for level in LEVELS]


def postprocessing_alone(detections):
    """A model of detections model ``detections``' post-processing layer alone: from the
    images (their size clips the boxes) and the outputs of each level to the detections."""
    import keras

    images = keras.Input(detections.input.shape[1:])
    levels = [keras.Input(tensor.shape[1:]) for tensor in level_outputs(detections)]
    count = len(LEVELS)
    outputs = detections.get_layer("detections")(
        [images, levels[:count], levels[count:2 * count], levels[2 * count:]])
    return keras.Model([images, *levels], outputs)


def level_anchors(model):
    """``{level: anchors}`` of RetinaNet ``model`` at its fixed input size (P3 .. P7)."""
    return {level: model.get_layer(f"anchors{level}").output.shape[1] for level in LEVELS}


def model_inputs(models, images):
    """``{row name: inputs}``: the images, and for the post-processing alone the images and
    the network's outputs of each level on them (computed once, untimed)."""
    import keras

    network = keras.Model(models[RAW].input, level_outputs(models[RAW]))
    levels = network.predict_on_batch(images)
    return {RAW: images, DETECTIONS: images, ALONE: [images, *levels]}


def time_models(models, inputs, rounds, calls):
    """``({row name: [images/s per round]}, detections per image of the last call)``:
    interleaved rounds, the order rotating."""
    names = list(models)
    rates = {name: [] for name in names}
    batch = len(inputs[RAW])
    found = None
    for round_index in range(rounds):
        print(f"  round {round_index + 1}/{rounds}", flush=True)
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            model = models[name]
            model.predict_on_batch(inputs[name])  # untimed: re-warm
            start = time.perf_counter()
            for _ in range(calls):
                outputs = model.predict_on_batch(inputs[name])
            rates[name].append(calls * batch / (time.perf_counter() - start))
            if name == DETECTIONS:
                found = float(np.mean(outputs["num_detections"]))
    return rates, found


def report(args, models, rates, found):
    """Print the machine line, the settings, the table and the post-processing's share."""
    import keras_resnet

    anchors = level_anchors(models[RAW])
    topk = models[DETECTIONS].get_layer("detections").topk_candidates
    candidates = sum(min(topk, count * CLASSES) for count in anchors.values())
    print(f"\n{describe(machine_description('cpu'))}")
    print(f"RetinaNet version {args.version} on ResNet-{args.depth} (random weights), "
          f"{args.size}x{args.size}, batch {args.batch}, {CLASSES} classes, {args.rounds} "
          f"interleaved rounds of {args.calls} calls")
    print(f"anchors: {sum(anchors.values()):,} ("
          + ", ".join(f"P{level} {count:,}" for level, count in anchors.items()) + ")")
    print(f"post-processing at score threshold {args.score_threshold} (the model's default "
          f"0.05): up to {candidates:,} candidates per image (the best {topk} of each level), "
          f"{found:.0f} detections kept by NMS")
    macs = keras_resnet.count_multiply_adds(models[RAW]) / 1e9
    print(f"{'model':<24}{'GMACs':>8}{'images/s':>10}{'(IQR)':>8}{'ms/image':>10}")
    medians = {}
    for name in models:
        stats = spread(rates[name])
        medians[name] = stats["median"]
        shown = "-" if name == ALONE else f"{macs:.1f}"
        print(f"{name:<24}{shown:>8}{stats['median']:>10.2f}{stats['iqr']:>8.2f}"
              f"{1000 / stats['median']:>10.1f}")
    alone, with_post = 1000 / medians[ALONE], 1000 / medians[DETECTIONS]
    print(f"post-processing: {alone:.1f} ms per image alone, {alone / with_post:.1%} of the "
          f"time per image with it; the first two rows differ by "
          f"{with_post - 1000 / medians[RAW]:.1f} ms ({1 - medians[DETECTIONS] / medians[RAW]:.1%})")


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
    rates, found = time_models(models, model_inputs(models, images), args.rounds, args.calls)
    report(args, models, rates, found)


if __name__ == "__main__":
    main()
