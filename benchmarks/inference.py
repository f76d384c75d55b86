"""Inference latency (batch 1) and throughput (batch 32) of one model, every way it can be run.

Runners, all for the same randomly initialised model (fixed seed; batch-norm statistics taken
from one batch of the random inputs so activations stay in range) and the same random inputs:

- Keras: ``model.predict(x, verbose=0)`` and the direct call ``model(x, training=False)``;
- SavedModel: the model exported with ``keras_resnet.export.export_saved_model`` to a
  temporary directory and loaded with ``tf.saved_model.load``; every signature is called:
  ``serving_default`` and ``probabilities`` (float32 images, already preprocessed),
  ``serving_images`` (uint8 images of the model's input size; preprocessing runs in the graph)
  and ``serving_bytes`` (JPEG bytes of the same images, decoded in the graph);
- TFLite: ``keras_resnet.export.tflite`` of that SavedModel, float32, float16 (float16
  weights), dynamic (int8 weights) and int8 (int8 weights and activations, float in/out;
  calibrated on ``--calibration-images`` random images), run by the LiteRT ``Interpreter``
  with ``num_threads`` = the usable CPUs (batch 32 via ``resize_tensor_input``). TFLite runs
  on the CPU even with ``--device gpu``.

Latency: ``--latency-runs`` single-image calls per runner (median and p90 ms); throughput:
``--rounds`` rounds of ``--throughput-batches`` calls at ``--batch-size`` 32 (median images/s,
min-max). Runners are interleaved (the order rotates) after one warm-up call each. The
``max |dp|`` column is the largest probability difference from the Keras model on the batch,
a sanity check that every runner computes the same network (int8 differs by quantization,
``serving_bytes`` by the JPEG compression of its random-noise inputs).

Commands:

    python benchmarks/inference.py                  # ResNet-50 at 224, about 4 min on a 2-core CPU
    python benchmarks/inference.py --model resnet20 # CIFAR ResNet-20 at 32x32, about 1 min
    python benchmarks/inference.py --model resnet50 --image-size 160 --latency-runs 50 --rounds 5
    python benchmarks/inference.py --device gpu     # Keras and SavedModel on GPU:0

Results: a table on stdout, the int8/float32 TFLite throughput ratio, and
``benchmarks/results/inference.json``.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

TFLITE_QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_arguments(parser, "inference.json")
    parser.add_argument("--model", default="resnet50",
                        help="keras_resnet model name (default: %(default)s)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="input side (default: 224 for ImageNet models, 32 for CIFAR models)")
    parser.add_argument("--batch-size", type=int, default=32, help="throughput batch")
    parser.add_argument("--latency-runs", type=int, default=None,
                        help="batch-1 calls per runner (default: 20 ImageNet, 100 CIFAR)")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds per runner")
    parser.add_argument("--throughput-batches", type=int, default=None,
                        help="batches per throughput round (default: 1 ImageNet / 10 CIFAR on "
                             "CPU, 20 / 50 on GPU)")
    parser.add_argument("--tflite", nargs="*", default=list(TFLITE_QUANTIZATIONS),
                        choices=TFLITE_QUANTIZATIONS, help="TFLite variants (default: all)")
    parser.add_argument("--calibration-images", type=int, default=8,
                        help="random images calibrating the int8 model")
    parser.add_argument("--threads", type=int, default=None,
                        help="TFLite interpreter threads (default: the usable CPUs)")
    return parser.parse_args(argv)


def calibrate_batch_norm(model, images):
    """Set every BatchNormalization's moving statistics to those of ``images`` (one pass).

    An untrained network keeps identity statistics (mean 0, variance 1), so its activations
    grow layer after layer and the softmax saturates to 0/1, which would make the parity
    column and the int8 calibration meaningless. One training-mode pass with momentum 0 gives
    the statistics of a real batch; the speed of any runner does not depend on them.
    """
    import keras

    layers = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
              if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    model(images, training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum


def keras_runners(model):
    import numpy as np

    return {
        "Keras model.predict": lambda x: np.asarray(model.predict(x, verbose=0, batch_size=len(x))),
        "Keras model(x) direct call": lambda x: model(x, training=False).numpy(),
    }


def savedmodel_runners(path, images_uint8):
    """One runner per signature of the export, each taking the float batch ``x``.

    Signatures with uint8 or string (JPEG) inputs get the uint8 images ``x`` was made from
    (the last ``len(x)`` of ``images_uint8``), converted once, outside the timed calls.
    """
    import numpy as np
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    prepared = {}

    def uint8_tensor(x):
        if ("uint8", len(x)) not in prepared:
            prepared[("uint8", len(x))] = tf.constant(images_uint8[-len(x):])
        return prepared[("uint8", len(x))]

    def jpeg_tensor(x):
        if ("jpeg", len(x)) not in prepared:
            prepared[("jpeg", len(x))] = tf.constant(
                [tf.io.encode_jpeg(image, quality=95).numpy() for image in images_uint8[-len(x):]])
        return prepared[("jpeg", len(x))]

    kinds = {tf.float32: (tf.constant, "float32 images"),
             tf.uint8: (uint8_tensor, "uint8 images, preprocessed in the graph"),
             tf.string: (jpeg_tensor, "JPEG bytes, decoded in the graph")}
    runners, notes = {}, {}
    for name, signature in loaded.signatures.items():
        (spec,) = signature.structured_input_signature[1].values()
        if spec.dtype not in kinds:
            continue
        convert, notes[name] = kinds[spec.dtype]

        def run(x, signature=signature, key=spec.name, convert=convert):
            return np.asarray(signature(**{key: convert(x)})["probabilities"])

        runners[f"SavedModel {name}"] = run
    return runners, notes, loaded


class TFLiteRunner:
    """LiteRT interpreters of one ``.tflite`` file, one per batch size (resized input)."""

    def __init__(self, path, threads):
        self.path, self.threads, self.interpreters = path, threads, {}

    def __call__(self, x):
        import numpy as np
        from ai_edge_litert.interpreter import Interpreter

        batch = len(x)
        if batch not in self.interpreters:
            interpreter = Interpreter(model_path=self.path, num_threads=self.threads)
            index = interpreter.get_input_details()[0]["index"]
            interpreter.resize_tensor_input(index, [batch, *x.shape[1:]], strict=False)
            interpreter.allocate_tensors()
            self.interpreters[batch] = interpreter
        interpreter = self.interpreters[batch]
        index = interpreter.get_input_details()[0]["index"]
        interpreter.set_tensor(index, np.asarray(x, np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


def main():
    args = parse_args()
    tf_device = common.select_device(args.device)
    common.set_seeds(args.seed)
    import numpy as np
    import tensorflow as tf

    import keras_resnet
    from keras_resnet import export
    from keras_resnet.models import parse_model_name

    try:
        family, depth = parse_model_name(args.model)
    except ValueError as error:
        raise SystemExit(f"--model: {error}") from None
    cifar = family == "cifar"
    size = args.image_size or (32 if cifar else 224)
    latency_runs = args.latency_runs or (100 if cifar else 20)
    batches = args.throughput_batches or (
        (10 if cifar else 1) if args.device == "cpu" else (50 if cifar else 20))
    threads = args.threads or common.cpu_info()["usable_cpus"]

    machine = common.machine_description(args.device)
    print(common.describe(machine))
    rng = np.random.default_rng(args.seed)
    images_uint8 = rng.integers(0, 256, (args.batch_size, size, size, 3), dtype=np.uint8)
    # What the export's default preprocessing makes of them: pixels scaled to [0, 1].
    x_batch = images_uint8.astype(np.float32) / 255.0
    x_one = x_batch[-1:]

    with tf.device(tf_device):
        model = keras_resnet.get_model(args.model, input_shape=(size, size, 3))
        calibrate_batch_norm(model, x_batch[:8])
    macs = keras_resnet.count_multiply_adds(model)
    print(f"{args.model}: {size}x{size}, {macs / 1e9:.3f} G multiply-adds per image; "
          f"TFLite threads {threads}", flush=True)

    runners, notes, files = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp, tf.device(tf_device):
        for name, run in keras_runners(model).items():
            runners[name], notes[name] = run, "float32 images"
        start = time.perf_counter()
        saved = export.export_saved_model(model, tmp, model_name="model", version=1)
        print(f"  SavedModel export {time.perf_counter() - start:.1f} s", flush=True)
        sm_runners, sm_notes, _loaded = savedmodel_runners(saved, images_uint8)
        runners.update(sm_runners)
        notes.update({f"SavedModel {k}": v for k, v in sm_notes.items()})
        calibration = rng.random((args.calibration_images, size, size, 3), dtype=np.float32)
        for quantization in args.tflite:
            start = time.perf_counter()
            path = export.tflite(
                saved, os.path.join(tmp, f"{quantization}.tflite"),
                quantization=None if quantization == "float32" else quantization,
                representative_data=calibration if quantization == "int8" else None)
            name = f"TFLite {quantization}"
            print(f"  {name} conversion {time.perf_counter() - start:.1f} s", flush=True)
            runners[name] = TFLiteRunner(path, threads)
            files[name] = os.path.getsize(path)
            notes[name] = f"LiteRT, {threads} threads (CPU)"

        reference = runners["Keras model(x) direct call"](x_batch)
        differences = {}
        for name, run in runners.items():  # warm-up at both batch sizes; parity on the batch
            run(x_one)
            differences[name] = float(np.max(np.abs(run(x_batch) - reference)))

        print(f"  latency: {latency_runs} interleaved batch-1 calls per runner", flush=True)
        latencies = {name: [] for name in runners}
        names = list(runners)
        for i in range(latency_runs):
            shift = i % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                runners[name](x_one)
                latencies[name].append(1000 * (time.perf_counter() - start))

        print(f"  throughput: {args.rounds} interleaved rounds of {batches} x batch "
              f"{args.batch_size} per runner", flush=True)

        def throughput(run):
            def go():
                for _ in range(batches):
                    run(x_batch)
                return batches * args.batch_size
            return go

        rates = common.interleaved({name: throughput(run) for name, run in runners.items()},
                                   args.rounds)

    rows = []
    for name in runners:
        stats = common.spread(rates[name])
        rows.append({
            "runner": name, "input": notes[name],
            "latency_ms": common.spread(latencies[name]),
            "latency_median_ms": common.spread(latencies[name])["median"],
            "latency_p90_ms": common.percentile(latencies[name], 90),
            "images_per_s": stats, "throughput": stats["median"], "min": stats["min"],
            "max": stats["max"], "max_abs_diff_vs_keras": differences[name],
            "tflite_bytes": files.get(name),
            "device": "/CPU:0" if name.startswith("TFLite") else tf_device,
        })
    print(f"\n{args.model} inference, {size}x{size}; latency at batch 1 ({latency_runs} runs), "
          f"throughput at batch {args.batch_size} ({args.rounds} rounds x {batches} batches)")
    common.print_table(rows, [
        ("runner", "runner", ""), ("input", "input", ""),
        ("latency ms", "latency_median_ms", ".2f"), ("p90 ms", "latency_p90_ms", ".2f"),
        (f"images/s @{args.batch_size}", "throughput", ".1f"), ("min", "min", ".1f"),
        ("max", "max", ".1f"), ("max |dp|", "max_abs_diff_vs_keras", ".1e"),
        ("MiB", lambda r: r["tflite_bytes"] and r["tflite_bytes"] / 2**20, ".1f"),
    ])
    ratios = {}
    if "TFLite int8" in rates and "TFLite float32" in rates:
        int8, float32 = (next(r for r in rows if r["runner"] == f"TFLite {q}")
                         for q in ("int8", "float32"))
        ratios = {
            "throughput_int8_over_float32": int8["throughput"] / float32["throughput"],
            "latency_int8_over_float32": int8["latency_median_ms"] / float32["latency_median_ms"],
        }
        print(f"\nTFLite int8 / float32: throughput {ratios['throughput_int8_over_float32']:.2f}x "
              f"(batch {args.batch_size}), latency {ratios['latency_int8_over_float32']:.2f}x "
              f"(batch 1)")
    settings = {**vars(args), "image_size": size, "latency_runs": latency_runs,
                "throughput_batches": batches, "threads": threads}
    common.write_json(args.json, machine, settings, rows, multiply_adds=macs, tflite_ratios=ratios)


if __name__ == "__main__":
    main()
