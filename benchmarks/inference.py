"""Inference latency (batch 1) and throughput (batch 32) of each model on every runtime, side by side.

For each ``--models`` entry (default ResNet-20 at 32x32 and ResNet-50 at 224x224), one randomly
initialised model (fixed seed; batch-norm statistics taken from one batch of the random inputs
so activations stay in range) is exported and run by:

- Keras: the direct call ``model(x, training=False)``;
- SavedModel: ``keras_resnet.export.export_saved_model``, loaded with ``tf.saved_model.load``,
  its ``serving_images`` signature (uint8 images in; preprocessing in the graph);
- TFLite (``keras_resnet.export.tflite``: Keras' litert exporter), float32 and int8 (int8
  weights and activations, float in/out), LiteRT ``Interpreter`` with ``--threads`` threads
  (batch 32 via ``resize_tensor_input``);
- ONNX Runtime (``keras_resnet.export.export_onnx``: Keras' ONNX exporter, tf2onnx), float32 and
  int8 (ONNX Runtime's static QDQ quantization, U8S8, 7-bit weights), CPU execution provider, ``--threads``
  intra-op threads, no spinning;
- OpenVINO (``keras_resnet.export.export_openvino``: Keras' OpenVINO exporter), float32 (f32
  inference precision), bfloat16 (the same file at the bf16 inference precision, on CPUs
  that multiply bfloat16 natively: AVX512_BF16 or AMX) and int8 (NNCF post-training
  quantization, when ``nncf`` is installed), compiled for the CPU per batch size (static
  shapes), latency hint. ONNX Runtime (no bfloat16 convolution on x86 CPUs) and LiteRT (no
  bfloat16 in XNNPACK) have no bfloat16 path to time.

Every int8 model is calibrated on the same ``--calibration-images`` random images. Each timed
call starts from uint8 images of the model's input size and includes the export's
preprocessing: in the SavedModel's graph, else ``keras_resnet.data.preprocess`` with the
model's ``ImagePreprocessing`` (one ``tf.function``; the row ``preprocessing alone`` times it
by itself). Latency: ``--latency-runs`` interleaved batch-1 calls per runner (p50, p99 ms);
throughput: ``--rounds`` interleaved rounds of ``--throughput-batches`` calls at
``--batch-size`` (median images/s, min-max). ``% peak``: 2 x multiply-adds x images/s over
this machine's float32 peak (``python -m benchmarks.peaks``: the measured matmul FLOP/s, or the
theoretical peak where that is higher, as on a shared machine whose matmul measures low;
int8 rows too, against the same float32 figure). ``max |dp|``: the largest probability difference from Keras
on the batch (int8 differs by quantization). ``vs SM``: throughput over the SavedModel's.

Commands:

    python -m benchmarks.inference                      # ResNet-20 and ResNet-50, about 8 min on 2 cores
    python -m benchmarks.inference --models resnet20    # about 1.5 min
    python -m benchmarks.inference --models resnet50 --rounds 5 --latency-runs 50
    python -m benchmarks.inference --runtimes keras saved_model onnx   # a subset

Results: the CPU's features (AVX2, AVX-512, VNNI, BF16, AMX), a table per model on stdout,
the fastest path per precision (float32, bfloat16, int8) against the SavedModel, as the
recommendation for this CPU, and ``benchmarks/results/inference.json``. No TensorFlow C++ log
lines: the benchmark runs in keras_resnet's quiet mode.
"""

import argparse
import os
import tempfile
import time

from benchmarks import backends, hardware, peaks, report, timing

RUNTIMES = ("keras", "saved_model", "tflite", "onnx", "openvino")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    report.add_common_arguments(parser, "inference.json")
    parser.add_argument("--models", "--model", nargs="+", default=["resnet20", "resnet50"],
                        help="keras_resnet model names (default: %(default)s)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="input side (default: 224 for ImageNet models, 32 for CIFAR models)")
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES,
                        help="runtimes to compare (default: all)")
    parser.add_argument("--batch-size", type=int, default=32, help="throughput batch")
    parser.add_argument("--latency-runs", type=int, default=None,
                        help="batch-1 calls per runner (default: 20 ImageNet, 100 CIFAR)")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds per runner")
    parser.add_argument("--throughput-batches", type=int, default=None,
                        help="batches per throughput round (default: 1 ImageNet / 10 CIFAR)")
    parser.add_argument("--calibration-images", type=int, default=8,
                        help="random images calibrating the int8 models")
    parser.add_argument("--threads", type=int, default=None,
                        help="LiteRT / ONNX Runtime / OpenVINO threads (default: the usable CPUs)")
    return parser.parse_args(argv)


def batch_norm_layers(model):
    """Every BatchNormalization layer of ``model``: those of its graph (nested models included)
    and those inside keras_resnet's blocks (their ``batch_norms``)."""
    import keras

    from keras_resnet.models import walk_layers

    layers = []
    for layer in walk_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layers.append(layer)
        layers.extend(getattr(layer, "batch_norms", ()))
    return layers


def calibrate_batch_norm(model, images):
    """Set every BatchNormalization's moving statistics to those of ``images`` (one pass).

    An untrained network keeps identity statistics (mean 0, variance 1), so its activations
    grow layer after layer and the softmax saturates to 0/1, which would make the parity
    column and the int8 calibration meaningless. One training-mode pass with momentum 0 gives
    the statistics of a real batch; the speed of any runner does not depend on them.
    """
    layers = batch_norm_layers(model)
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    model(images, training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum


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


class OpenVINORunner:
    """One OpenVINO IR compiled per batch size (static shapes are faster than the dynamic
    batch of the export), ``hint`` inference precision ("f32" or "bf16"), latency hint,
    ``threads`` threads, no CPU pinning (the machine is shared with the other runners and
    processes)."""

    def __init__(self, path, threads, hint="f32"):
        import openvino as ov

        self.core, self.model, self.threads, self.requests = ov.Core(), None, threads, {}
        self.hint = hint
        self.model = self.core.read_model(path)

    def __call__(self, x):
        batch = len(x)
        if batch not in self.requests:
            model = self.model.clone()
            model.reshape({0: [batch, *x.shape[1:]]})
            compiled = self.core.compile_model(model, "CPU", {
                "INFERENCE_PRECISION_HINT": self.hint, "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_NUM_THREADS": self.threads, "ENABLE_CPU_PINNING": False})
            self.requests[batch] = compiled.create_infer_request()
        outputs = self.requests[batch].infer([x])
        return next(iter(outputs.values())).copy()


def onnx_runner(path, threads):
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    # Threads that spin after a run steal the CPU from the runner that follows.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: np.asarray(x, np.float32)})[0]


def export_files(model, tmp, runtimes, calibration, threads):
    """Export ``model`` to each file runtime: name -> (runner taking float images, bytes, note)."""
    import importlib.util

    from keras_resnet import devices, export

    plans = []
    if "tflite" in runtimes:
        plans += [("TFLite", export.tflite, ".tflite", q, TFLiteRunner, "LiteRT")
                  for q in ("float32", "int8")]
    if "onnx" in runtimes:
        plans += [("ONNX Runtime", export.export_onnx, ".onnx", q, onnx_runner, "CPU EP")
                  for q in ("float32", "int8")]
    if "openvino" in runtimes:
        quantizations = ("float32", "int8") if importlib.util.find_spec("nncf") else ("float32",)
        plans += [("OpenVINO", export.export_openvino, ".xml", q, OpenVINORunner, "CPU, f32")
                  for q in quantizations]
    files = {}
    for label, exporter, suffix, quantization, make_runner, note in plans:
        start = time.perf_counter()
        path = exporter(model, os.path.join(tmp, f"{quantization}{suffix}"),
                        None if quantization == "float32" else quantization,
                        representative_data=calibration)
        name = f"{label} {quantization}"
        print(f"  {name} export {time.perf_counter() - start:.1f} s", flush=True)
        files[name] = (make_runner(path, threads), export.size_bytes(path),
                       f"{note}, {threads} threads")
        if label == "OpenVINO" and quantization == "float32" and devices.cpu_has_bfloat16():
            files["OpenVINO bfloat16"] = (OpenVINORunner(path, threads, "bf16"),
                                          export.size_bytes(path), f"CPU, bf16, {threads} threads")
    return files


def make_runners(model, tmp, args, calibration, threads, tf_device):
    """name -> (runner taking uint8 images, file bytes or None, note), all with preprocessing."""
    import tensorflow as tf

    from keras_resnet import data, export
    from keras_resnet import preprocessing as preprocessing_lib

    preprocessing = preprocessing_lib.of(model) or preprocessing_lib.default_for(model)
    prepare = tf.function(lambda images: data.preprocess(images, preprocessing))
    runners = {"preprocessing alone": (lambda images: prepare(images).numpy(), None,
                                       "data.preprocess (tf.function)")}
    if "keras" in args.runtimes:
        runners["Keras model(x)"] = (
            lambda images: model(prepare(images), training=False).numpy(), None, tf_device)
    if "saved_model" in args.runtimes:
        start = time.perf_counter()
        path = export.export_saved_model(model, tmp, model_name="model", version=1)
        print(f"  SavedModel export {time.perf_counter() - start:.1f} s", flush=True)
        signature = tf.saved_model.load(path).signatures["serving_images"]
        runners["SavedModel serving_images"] = (
            lambda images: signature(images=tf.constant(images))["probabilities"].numpy(),
            export.size_bytes(path), f"{tf_device}, preprocessing in the graph")
    for name, (run, size, note) in export_files(model, tmp, args.runtimes, calibration,
                                                threads).items():
        runners[name] = (lambda images, run=run: run(prepare(images).numpy()), size, note)
    return runners


def measure(runners, images, latency_runs, rounds, batches):
    """Warm-up, then interleaved batch-1 latencies (ms) and batch throughputs (images/s)."""
    one = images[-1:]
    for run in runners.values():  # warm-up at both batch sizes
        run(one)
        run(images)
    latencies = {name: [] for name in runners}
    names = list(runners)
    for i in range(latency_runs):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            runners[name](one)
            latencies[name].append(1000 * (time.perf_counter() - start))

    def throughput(run):
        def go():
            for _ in range(batches):
                run(images)
            return batches * len(images)
        return go

    print(f"  throughput: {rounds} interleaved rounds of {batches} x batch {len(images)}",
          flush=True)
    rates = timing.interleaved({name: throughput(run) for name, run in runners.items()}, rounds)
    return latencies, rates


def benchmark_model(name, args, threads, tf_device, peak_float32):
    """Rows of one model: every runner's latency, throughput, parity and share of peak."""
    import numpy as np
    import tensorflow as tf

    import keras_resnet
    from keras_resnet.models import parse_model_name

    try:
        family, _ = parse_model_name(name)
    except ValueError as error:
        raise SystemExit(f"--models: {error}") from None
    cifar = family == "cifar"
    size = args.image_size or (32 if cifar else 224)
    latency_runs = args.latency_runs or (100 if cifar else 20)
    batches = args.throughput_batches or (10 if cifar else 1)
    rng = np.random.default_rng(args.seed)
    images = rng.integers(0, 256, (args.batch_size, size, size, 3), dtype=np.uint8)
    with tf.device(tf_device):
        model = keras_resnet.get_model(name, input_shape=(size, size, 3))
        calibrate_batch_norm(model, images[:8].astype(np.float32) / 255.0)
    macs = keras_resnet.count_multiply_adds(model)
    print(f"\n{name}: {size}x{size}, {macs / 1e9:.3f} G multiply-adds per image", flush=True)
    # int8 calibration: random images, preprocessed as the model's preprocessing does.
    calibration = rng.integers(0, 256, (args.calibration_images, size, size, 3)).astype(
        np.float32) / 255.0
    with tempfile.TemporaryDirectory() as tmp, tf.device(tf_device):
        runners = make_runners(model, tmp, args, calibration, threads, tf_device)
        reference = runners["Keras model(x)"][0](images) if "keras" in args.runtimes else None
        differences = {n: None if reference is None or n == "preprocessing alone"
                       else float(np.max(np.abs(run(images) - reference)))
                       for n, (run, _, _) in runners.items()}
        latencies, rates = measure({n: r[0] for n, r in runners.items()}, images,
                                   latency_runs, args.rounds, batches)
    rows = []
    for runner, (_, size_bytes, note) in runners.items():
        stats = timing.spread(rates[runner])
        flops = None if runner == "preprocessing alone" else 2 * macs * stats["median"]
        rows.append({
            "model": name, "image_size": size, "runner": runner, "note": note,
            "latency_p50_ms": timing.percentile(latencies[runner], 50),
            "latency_p99_ms": timing.percentile(latencies[runner], 99),
            "latency_ms": timing.spread(latencies[runner]),
            "images_per_s": stats, "throughput": stats["median"], "min": stats["min"],
            "max": stats["max"], "flops": flops,
            "fraction_of_peak": flops and peak_float32 and flops / peak_float32,
            "max_abs_diff_vs_keras": differences[runner], "file_bytes": size_bytes,
        })
    settings = {"latency_runs": latency_runs, "throughput_batches": batches, "macs": macs}
    return rows, settings


def print_rows(rows, args, settings):
    saved = next((r for r in rows if r["runner"].startswith("SavedModel")), None)
    first = rows[0]
    print(f"\n{first['model']} inference, {first['image_size']}x{first['image_size']}, uint8 images "
          f"in, preprocessing included; latency at batch 1 ({settings['latency_runs']} runs), "
          f"throughput at batch {args.batch_size} ({args.rounds} rounds x "
          f"{settings['throughput_batches']} batches)")
    report.print_table(rows, [
        ("runner", "runner", ""),
        ("p50 ms", "latency_p50_ms", ".2f"), ("p99 ms", "latency_p99_ms", ".2f"),
        (f"images/s @{args.batch_size}", "throughput", ".1f"), ("min", "min", ".1f"),
        ("max", "max", ".1f"),
        ("vs SM", lambda r: saved and r["throughput"] / saved["throughput"], ".2f"),
        ("% peak", lambda r: r["fraction_of_peak"] and 100 * r["fraction_of_peak"], ".1f"),
        ("max |dp|", "max_abs_diff_vs_keras", ".1e"),
        ("MiB", lambda r: r["file_bytes"] and r["file_bytes"] / 2**20, ".2f"),
        ("runs on", "note", ""),
    ])


def _precision(runner):
    return "int8" if "int8" in runner else "bfloat16" if "bfloat16" in runner else "float32"


def summary(rows):
    """The fastest path per precision (float32, bfloat16, int8) and the fastest batch-1 path
    against the SavedModel: the recommendation for this CPU."""
    saved = next((r for r in rows if r["runner"].startswith("SavedModel")), None)
    models = [r for r in rows if r["runner"] != "preprocessing alone"]
    if saved is None or not models:
        return {}
    result = {}
    for precision in ("float32", "bfloat16", "int8"):
        candidates = [r for r in models if _precision(r["runner"]) == precision]
        if candidates:
            best = max(candidates, key=lambda r: r["throughput"])
            ratio = best["throughput"] / saved["throughput"]
            result[f"fastest_{precision}"] = best["runner"]
            result[f"{precision}_throughput_vs_saved_model"] = ratio
            print(f"  fastest {precision}: {best['runner']}, {ratio:.2f}x the SavedModel's "
                  "throughput")
    fastest = min(models, key=lambda r: r["latency_p50_ms"])
    result.update(fastest_latency=fastest["runner"],
                  latency_p50_vs_saved_model=fastest["latency_p50_ms"] / saved["latency_p50_ms"])
    print(f"  fastest batch-1: {result['fastest_latency']}, p50 "
          f"{result['latency_p50_vs_saved_model']:.2f}x the SavedModel's")
    return result


def cpu_features(cpu):
    """The CPU features that decide the fast paths, as one line."""
    flags = set(cpu["flags"])
    named = [("AVX2", "avx2"), ("AVX-512", "avx512f"), ("VNNI", ("avx512_vnni", "avx_vnni")),
             ("BF16", ("avx512_bf16", "amx_bf16")), ("AMX", "amx_tile")]
    return ", ".join(f"{label} {'yes' if flags & set([keys] if isinstance(keys, str) else keys) else 'no'}"
                     for label, keys in named)


def main():
    args = parse_args()
    tf_device = backends.select_device(args.device)  # loads TensorFlow quietly
    backends.set_seeds(args.seed)
    threads = args.threads or hardware.cpu_info()["usable_cpus"]
    machine = hardware.machine_description(args.device)
    print(hardware.describe(machine))
    print(f"CPU features: {cpu_features(machine['cpu'])}")
    peak = peaks.peak_flops("cpu")
    reference = peaks.peak_for(peak, "float32")
    peak_float32 = reference["reference"]
    print(f"float32 peak: measured matmul {report.format_flops(reference['measured'])}, "
          f"theoretical {report.format_flops(reference['theoretical'])}; % peak divides by "
          f"{report.format_flops(peak_float32)}; runtime threads {threads}", flush=True)
    results, settings, summaries = [], {}, {}
    for name in args.models:
        rows, settings[name] = benchmark_model(name, args, threads, tf_device, peak_float32)
        print_rows(rows, args, settings[name])
        summaries[name] = summary(rows)
        results += rows
    report.write_json(args.json, machine, {**vars(args), "threads": threads, "models": settings},
                      results, peak=peak, summary=summaries)


if __name__ == "__main__":
    main()
