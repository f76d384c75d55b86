"""Training throughput (images/s) of keras_resnet models beside reference ResNets, same process,
on any Keras backend (TensorFlow, JAX, PyTorch).

Models: keras_resnet ResNet-18/34/50/101/152 (ImageNet, at ``--image-size``, 224 by default as
in the paper, 1000 classes), CIFAR ResNet-20/56/110 (32x32, 10 classes); references:
keras.applications ResNet50/101/152 on the same Keras backend, and torchvision's resnet50 (and
18/101/152) trained by a plain PyTorch loop, eagerly and under ``torch.compile``, wherever
torch and torchvision are importable (whatever the Keras backend).

Modes (``--modes``, any subset, all in one invocation; join with "+" to combine, e.g.
``mixed+xla``):

- ``float32``: TensorFlow: plain graph execution, ``jit_compile=False`` (set explicitly: Keras'
  "auto" turns XLA on when a GPU is present); JAX: jitted (XLA is how JAX runs at all);
  PyTorch: eager;
- ``xla``: ``jit_compile=True``: XLA on TensorFlow, ``torch.compile`` of the train step on
  PyTorch; refused on JAX, where every mode is already XLA;
- ``bf16``: the ``mixed_bfloat16`` policy (torchvision: ``torch.autocast`` to bfloat16);
- ``mixed``: ``mixed_float16`` on GPU (Keras wraps the optimizer in a LossScaleOptimizer;
  torchvision: autocast float16 with a GradScaler), ``mixed_bfloat16`` on CPU;
- ``spe``: ``steps_per_execution=--steps-per-execution`` (4 by default; Keras models only).

How it measures: every Keras model is timed with ``model.fit`` on one in-memory batch repeated
(random images, fixed seed): a cached ``tf.data`` dataset on TensorFlow, a
``keras.utils.PyDataset`` handing out one device-resident batch on JAX and PyTorch, so the input
pipeline costs nothing and ``steps_per_execution`` takes effect. torchvision models run the
textbook loop (``zero_grad``, forward, cross-entropy, ``backward``, ``SGD.step``) on one
channels-last batch already on the device. One round = ``--steps`` steps (a multiple of the steps
per execution), wall time to the end of the last step. Every model first gets a warm-up
(tracing, compilation, first steps), then ``--rounds`` timed rounds. The models of one group
have their rounds interleaved (the order rotates each round), so drifts of the machine hit all
of them alike; groups run one after the other. A group is one depth (``--interleave depth``,
the CPU default: fewer models in memory) or every model at once (``all``, the GPU default).
Compilation: SGD(0.1, momentum 0.9), sparse categorical cross-entropy, no metrics, no weight
decay, identical for every model.

Reported per model and mode: median images/s with min-max and IQR over rounds, ratio to the
same model in float32, to every reference in the same mode (keras.applications, torchvision
eager, torchvision compiled), and achieved FLOP/s = 3 x forward multiply-adds x 2 FLOPs x
images/s (the usual convention that the backward pass costs twice the forward; multiply-adds
of convolutions and dense layers only, as ``keras_resnet.count_multiply_adds``) with its
fraction of the device's peak for the mode's compute dtype and of its bfloat16 peak: the
published / theoretical peak, or the measured matmul peak where that is higher; all fractions
are in the JSON (see ``python -m benchmarks.peaks``).

Commands:

    python -m benchmarks.train_throughput     # default, about 10 min on a 2-core CPU:
        # ResNet-20 (32x32, batch 128) and ResNet-50 beside keras.applications ResNet50
        # (224x224, batch 8), modes float32 xla mixed spe, 3 rounds of 4 steps
    python -m benchmarks.train_throughput --backend jax --models resnet20 resnet50 --modes float32
    python -m benchmarks.train_throughput --device gpu --backend jax      # the GPU table:
        # ResNet-18/50/152 beside keras.applications ResNet50 and torchvision resnet50 (eager,
        # torch.compile), float32 and bf16, batch 256, 224x224, all interleaved
    python -m benchmarks.train_throughput --small --backend jax           # the code path on a
        # CPU in well under a minute: CIFAR ResNet-8 (and torchvision resnet18, eager, where
        # importable) at 32x32, batch 2, 2 steps, 1 round (figures meaningless; for tests)
    python -m benchmarks.train_throughput --models all --rounds 5           # the full CPU table
    python -m benchmarks.train_throughput --backends tensorflow jax --models resnet20 \
        --modes float32 --rounds 5        # JAX vs TensorFlow, rounds interleaved across two
        # processes (one per backend; ratios to the first backend named)

Model names: ``resnet18`` ... ``resnet152``, ``resnet20`` ... ``resnet110`` and any CIFAR depth
``resnetN`` (keras_resnet; ``keras_resnet:resnet50`` also works), ``ka:ResNet50`` /
``keras.applications:ResNet50`` (also 101, 152), ``tv:resnet50`` (torchvision, eager) and
``tv:resnet50+compile`` (torch.compile), or ``all``. Results: a table on stdout and
``benchmarks/results/train_throughput.json``.

With ``--backend jax`` (or torch) nothing here imports TensorFlow.
"""

import argparse
import gc
import importlib.util
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from benchmarks import backends, feeds, hardware, peaks, report, timing  # noqa: E402

KERAS_RESNET_ALL = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                    "resnet20", "resnet56", "resnet110"]
APPLICATIONS_ALL = ["ka:ResNet50", "ka:ResNet101", "ka:ResNet152"]
TORCHVISION_REFERENCES = ["tv:resnet50", "tv:resnet50+compile"]
DEFAULT_MODELS = {"cpu": ["resnet20", "resnet50", "ka:ResNet50"],
                  "gpu": ["resnet18", "resnet50", "resnet152", "ka:ResNet50"]
                  + TORCHVISION_REFERENCES}
# keras.applications' ResNet50 alone takes over a minute to build and compile on JAX on a
# 2-core CPU: --small leaves it out (name it in --models to have it).
SMALL_MODELS = ["resnet8", "tv:resnet18"]
MODES = ("float32", "xla", "bf16", "mixed", "spe")
DEFAULT_MODES = {"cpu": ["float32", "xla", "mixed", "spe"], "gpu": ["float32", "bf16"]}
SOURCES = ("keras_resnet", "keras.applications", "torchvision")


_TORCHVISION = {}


def torchvision_available():
    """True when torch and torchvision import (a torchvision built for another torch does not)."""
    if "ok" not in _TORCHVISION:
        try:
            if any(importlib.util.find_spec(m) is None for m in ("torch", "torchvision")):
                raise ImportError("torch and torchvision are not both installed")
            for module in ("torch", "torchvision"):
                importlib.import_module(module)

            _TORCHVISION.update(ok=True, why=None)
        except Exception as error:  # noqa: BLE001  (a broken install raises anything)
            _TORCHVISION.update(ok=False, why=f"{type(error).__name__}: {error}")
    return _TORCHVISION["ok"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    report.add_common_arguments(parser, "train_throughput.json", peak=True, backend=True)
    parser.add_argument("--models", nargs="+", default=None,
                        help="model names or 'all' (default, CPU: "
                             f"{' '.join(DEFAULT_MODELS['cpu'])}; GPU: "
                             f"{' '.join(DEFAULT_MODELS['gpu'])}, the torchvision ones where "
                             "torch and torchvision are importable)")
    parser.add_argument("--modes", nargs="+", default=None,
                        help=f"any of {', '.join(MODES)}, or combinations such as mixed+xla "
                             "(default, CPU: float32 xla mixed spe, without xla on JAX; GPU: "
                             "float32 bf16)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="ImageNet models' input side (default 224; 32 with --small)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="ImageNet models' batch (default: 8 on CPU, 256 on GPU, 2 with --small)")
    parser.add_argument("--cifar-batch-size", type=int, default=None,
                        help="CIFAR models' batch (default: 128, the paper's; 256 when "
                             "--batch-size is 256 or more; 2 with --small)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="timed rounds per model and mode (default 3; 1 with --small)")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps per round (default: 4 ImageNet / 8 CIFAR on CPU, "
                             "20 / 40 on GPU, 2 with --small; rounded up to a multiple of "
                             "--steps-per-execution)")
    parser.add_argument("--steps-per-execution", type=int, default=4, help="for the spe mode")
    parser.add_argument("--interleave", choices=("depth", "all"), default=None,
                        help="interleave the rounds of the models of one depth, or of all models "
                             "(default: depth on CPU, all on GPU)")
    parser.add_argument("--no-measure-peak", action="store_true",
                        help="skip the matmul peak measurement (theoretical peak only)")
    parser.add_argument("--backends", nargs="+", choices=backends.BACKENDS, default=None,
                        help="compare Keras backends: one process per backend (each builds "
                             "and warms up every model), their rounds interleaved one after "
                             "the other; ratios to the first backend named")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--small", action="store_true",
                        help="a run of the code path on a CPU in well under a minute (tests): "
                             f"models {' '.join(SMALL_MODELS)} (torchvision where importable), "
                             "32x32, batch 2, 2 steps, 1 round, float32, 256x256 matmul peak; "
                             "any option given explicitly wins")
    args = parser.parse_args(argv)
    if args.backends:
        if args.backend or args.worker or len(set(args.backends)) != len(args.backends):
            parser.error("--backends: name two or more different backends, without --backend")
        if args.modes and "xla" in " ".join(args.modes).replace("+", " ").split() \
                and "jax" in args.backends:
            parser.error("--modes xla: under jax every mode is XLA-compiled (jit)")
        return args  # the workers check the rest, each on its backend
    args.backend = backends.set_backend(args.backend)
    device = args.device
    if args.small:
        defaults = {"image_size": 32, "batch_size": 2, "cifar_batch_size": 2, "rounds": 1,
                    "steps": 2, "interleave": "all"}
        for key, value in defaults.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
        if args.models is None:
            args.models = [m for m in SMALL_MODELS
                           if not m.startswith("tv:") or torchvision_available()]
        if args.modes is None:
            args.modes = ["float32"]
    if args.models is None:
        args.models = [m for m in DEFAULT_MODELS[device]
                       if not m.startswith("tv:") or torchvision_available()]
    if args.modes is None:
        args.modes = [m for m in DEFAULT_MODES[device]
                      if not (m == "xla" and args.backend == "jax")]
    args.image_size = args.image_size or 224
    args.rounds = args.rounds or 3
    args.interleave = args.interleave or ("all" if device == "gpu" else "depth")
    if args.batch_size is None:
        args.batch_size = 8 if device == "cpu" else 256
    if args.cifar_batch_size is None:
        args.cifar_batch_size = 256 if args.batch_size >= 256 else 128
    for mode in args.modes:
        if not set(mode.split("+")) <= set(MODES):
            parser.error(f"--modes: {mode!r} is not one of {', '.join(MODES)} or a '+' combination")
        if args.backend == "jax" and "xla" in mode.split("+"):
            parser.error(f"--modes: {mode!r}: under --backend jax every mode is XLA-compiled "
                         "(jit); 'xla' would time the same thing twice")
        if {"bf16", "mixed"} <= set(mode.split("+")):
            parser.error(f"--modes: {mode!r}: bf16 and mixed are two precisions; pick one")
    expanded = []
    for name in args.models:
        for spec in (KERAS_RESNET_ALL + APPLICATIONS_ALL if name == "all" else [name]):
            if spec not in expanded:
                expanded.append(spec)
    args.models = expanded
    for spec in args.models:
        if parse_spec(spec)[0] == "torchvision" and not torchvision_available():
            parser.error(f"--models {spec}: needs torch and torchvision, which do not import "
                         f"here ({_TORCHVISION['why']}; pip install torch torchvision)")
    return args


def parse_spec(spec):
    """``(source, name, family, depth, compiled)`` of a model spec."""
    source, _, name = spec.rpartition(":")
    if source in ("tv", "torchvision"):
        base, _, option = name.partition("+")
        if option not in ("", "compile") or not base.startswith("resnet") or not base[6:].isdigit() \
                or int(base[6:]) not in (18, 34, 50, 101, 152):
            raise SystemExit(f"--models: {spec!r}: torchvision models are tv:resnet18/34/50/101/152, "
                             "optionally +compile (torch.compile)")
        return "torchvision", base, "imagenet", int(base[6:]), option == "compile"
    if source in ("ka", "keras.applications") or spec.startswith("keras.applications."):
        name = name or spec.split(".")[-1]
        if not name.startswith("ResNet") or not name[6:].isdigit() \
                or int(name[6:]) not in (50, 101, 152):
            raise SystemExit(f"--models: {spec!r}: keras.applications models are ResNet50/101/152")
        return "keras.applications", name, "imagenet", int(name[6:]), False
    if source not in ("", "keras_resnet"):
        raise SystemExit(f"--models: {spec!r} must be a keras_resnet name (resnet50), "
                         "ka:ResNet50 or tv:resnet50[+compile]")
    from keras_resnet.models import parse_model_name

    try:
        family, depth = parse_model_name(name)
    except ValueError as error:
        raise SystemExit(f"--models: {error}") from None
    return "keras_resnet", name, family, depth, False


def label(spec):
    source, name, _, _, compiled = parse_spec(spec)
    if source == "torchvision":
        return f"torchvision {name} ({'torch.compile' if compiled else 'eager'})"
    return f"{source} {name}"


def is_reference(spec):
    return parse_spec(spec)[0] != "keras_resnet"


def settings_of(mode, device, spe, backend):
    features = set(mode.split("+"))
    if "bf16" in features:
        precision = "mixed_bfloat16"
    elif "mixed" in features:
        precision = backends.mixed_policy(device)
    else:
        precision = "float32"
    return {"precision": precision,
            # JAX runs jitted or op by op; only the first is a way to train.
            "jit_compile": True if backend == "jax" else "xla" in features,
            "steps_per_execution": spe if "spe" in features else 1}


def applies(spec, mode):
    """torchvision rows exist for the precisions only (no XLA, no steps_per_execution)."""
    return not (parse_spec(spec)[0] == "torchvision" and set(mode.split("+")) & {"xla", "spe"})


def group_key(spec, interleave):
    if interleave == "all":
        return "all"
    _, _, family, depth, _ = parse_spec(spec)
    return f"{family}{depth}"


# ---------------------------------------------------------------------------------------------
# Keras models


def build_keras(spec, size, classes, policy):
    import keras

    import keras_resnet

    source, name, _, _, _ = parse_spec(spec)
    keras.config.set_dtype_policy(policy)
    try:
        if source == "keras.applications":
            return getattr(keras.applications, name)(
                weights=None, input_shape=(size, size, 3), classes=classes)
        return keras_resnet.get_model(name, input_shape=(size, size, 3), classes=classes)
    finally:
        keras.config.set_dtype_policy("float32")


def keras_runner(spec, size, classes, batch, settings, data, steps, seed):
    """(warm-up callable, timed callable, forward multiply-adds) of a Keras model."""
    import keras

    import keras_resnet

    keras.utils.set_random_seed(seed)
    model = build_keras(spec, size, classes, settings["precision"])
    macs = keras_resnet.count_multiply_adds(model)
    feeds.compile_for_benchmark(model, settings["jit_compile"], settings["steps_per_execution"])
    warmup = feeds.fit_runner(model, data, settings["steps_per_execution"], batch)
    return warmup, feeds.fit_runner(model, data, steps, batch), macs


# ---------------------------------------------------------------------------------------------
# torchvision models, trained by a plain PyTorch loop


def torchvision_runner(spec, size, classes, batch, precision, device, x, y, steps, seed):
    """(warm-up callable, timed callable, forward multiply-adds) of a torchvision ResNet."""
    import torch
    import torchvision

    _, name, _, depth, compiled = parse_spec(spec)
    target = torch.device("cuda" if device == "gpu" else "cpu")
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None, num_classes=classes)
    model = model.to(target, memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    forward = torch.compile(model) if compiled else model
    images = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    images, labels = images.to(target), torch.from_numpy(y).long().to(target)
    autocast_dtype = {"mixed_bfloat16": torch.bfloat16, "mixed_float16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(target.type) if precision == "mixed_float16" else None

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(target.type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            loss = loss_fn(forward(images), labels)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        return loss

    def run(count):
        def go():
            for _ in range(count):
                loss = step()
            float(loss)  # waits for the device
            return count * batch
        return go

    return run(2), run(steps), torchvision_multiply_adds(name, size, classes)


def torchvision_multiply_adds(name, size, classes):
    """Forward multiply-adds (convolutions and the classifier, one image) of a torchvision model,
    counted by hooks on a shape-only ("meta" device) forward pass."""
    import torch
    import torchvision

    model = getattr(torchvision.models, name)(weights=None, num_classes=classes).to("meta").eval()
    total = []

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            total.append(output[0].numel() * kh * kw * module.in_channels // module.groups)
        elif isinstance(module, torch.nn.Linear):
            total.append(module.in_features * module.out_features)

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size, device="meta"))
    for hook in hooks:
        hook.remove()
    return sum(total)


# ---------------------------------------------------------------------------------------------
# Groups and rows


def prepare_group(args, specs, tf_device):
    """Build and warm up every (model, mode) of ``specs``; returns (timed runners, their meta)."""
    runners, meta, datasets, batches = {}, {}, {}, {}
    for spec in specs:
        family = parse_spec(spec)[2]
        cifar = family == "cifar"
        size = 32 if cifar else args.image_size
        batch = args.cifar_batch_size if cifar else args.batch_size
        classes = 10 if cifar else 1000
        steps = args.steps or ((8 if cifar else 4) if args.device == "cpu" else (40 if cifar else 20))
        spe = args.steps_per_execution
        if any("spe" in mode.split("+") for mode in args.modes):
            steps = -(-steps // spe) * spe
        if (size, batch, classes) not in batches:
            batches[(size, batch, classes)] = feeds.random_batch(batch, size, classes, args.seed)
        x, y = batches[(size, batch, classes)]
        for mode in args.modes:
            if not applies(spec, mode):
                continue
            settings = settings_of(mode, args.device, spe, args.backend)
            print(f"  warm-up: {label(spec)}, {mode}", flush=True)
            start = time.perf_counter()
            if parse_spec(spec)[0] == "torchvision":
                warmup, timed, macs = torchvision_runner(
                    spec, size, classes, batch, settings["precision"], args.device, x, y, steps,
                    args.seed)
                settings = {**settings, "jit_compile": "torch.compile" if parse_spec(spec)[4]
                            else False, "steps_per_execution": 1}
            else:
                with backends.device_scope(tf_device):
                    if (size, batch, classes) not in datasets:
                        datasets[(size, batch, classes)] = feeds.cached_dataset(x, y)
                    warmup, timed, macs = keras_runner(
                        spec, size, classes, batch, settings, datasets[(size, batch, classes)],
                        steps, args.seed)
            with backends.device_scope(tf_device):
                warmup()
            runners[(spec, mode)] = timed
            meta[(spec, mode)] = {"settings": settings, "multiply_adds": macs, "input": size,
                                  "batch": batch, "steps": steps,
                                  "warmup_s": time.perf_counter() - start}
    return runners, meta


def rows_from(rates, meta, peak, backend):
    """One result row per (model, mode): images/s spread, ratios, FLOP/s and peak fractions."""
    rows = []
    for (spec, mode), values in rates.items():
        info = meta[(spec, mode)]
        stats = timing.spread(values)
        flops = 3 * info["multiply_adds"] * 2 * stats["median"]
        ceiling = peaks.peak_for(peak, info["settings"]["precision"])
        bf16 = peaks.peak_for(peak, "mixed_bfloat16")
        reference = rates.get((spec, "float32"))
        rows.append({
            "model": label(spec), "spec": spec, "source": parse_spec(spec)[0], "mode": mode,
            "backend": "torch (plain loop)" if parse_spec(spec)[0] == "torchvision" else backend,
            **info["settings"], "input": f"{info['input']}x{info['input']}",
            "batch": info["batch"], "steps_per_round": info["steps"],
            "images_per_s": stats, "median": stats["median"], "min": stats["min"],
            "max": stats["max"], "iqr": stats["iqr"],
            "vs_float32": (stats["median"] / timing.spread(reference)["median"]
                           if reference else None),
            "forward_multiply_adds": info["multiply_adds"], "achieved_flops": flops,
            "peak_flops": ceiling["reference"],
            "fraction_of_peak": flops / ceiling["reference"] if ceiling["reference"] else None,
            "fraction_of_theoretical": (flops / ceiling["theoretical"]
                                        if ceiling["theoretical"] else None),
            "fraction_of_measured_matmul": (flops / ceiling["measured"]
                                            if ceiling["measured"] else None),
            "bf16_peak_flops": bf16["reference"],
            "fraction_of_bf16_peak": flops / bf16["reference"] if bf16["reference"] else None,
            "warmup_s": info["warmup_s"],
        })
    return rows


def run_group(args, specs, tf_device, peak):
    """Build every (model, mode) of one group, time interleaved rounds; returns result rows."""
    import keras

    runners, meta = prepare_group(args, specs, tf_device)
    with backends.device_scope(tf_device):
        rates = timing.interleaved(runners, args.rounds)
    rows = rows_from(rates, meta, peak, args.backend)
    runners.clear()
    keras.backend.clear_session()
    gc.collect()
    return rows


def add_reference_ratios(rows):
    """``vs`` (reference spec -> ratio) on every row: images/s over the reference's, same mode."""
    medians = {(r["spec"], r["mode"]): r["median"] for r in rows}
    references = [s for s in dict.fromkeys(r["spec"] for r in rows) if is_reference(s)]
    for row in rows:
        row["vs"] = {ref: row["median"] / medians[(ref, row["mode"])]
                     for ref in references
                     if ref != row["spec"] and (ref, row["mode"]) in medians}
    return references


# ---------------------------------------------------------------------------------------------
# Several backends, interleaved: one worker process per backend

_TAG = "@@train_throughput "


def _worker_argv(argv, backend):
    """``argv`` without ``--backends ...`` and ``--json``, for the worker of ``backend``."""
    out, skip = [], False
    for token in argv:
        if token in ("--backends", "--json"):
            skip = True
            continue
        if skip and not token.startswith("--"):
            continue
        skip = False
        out.append(token)
    return out + ["--backend", backend, "--worker", "--interleave", "all"]


def serve_rounds(args):
    """Worker: build and warm up everything, then time one round per ``round`` line on stdin."""
    tf_device = backends.select_device(args.device)
    backends.set_seeds(args.seed)
    machine = hardware.machine_description(args.device)
    matmul = {"size": 256, "repeats": 2} if args.small else {}
    peak = peaks.peak_flops(args.device, measure=not args.no_measure_peak, cpu_ghz=args.cpu_ghz,
                             **matmul)
    runners, meta = prepare_group(args, args.models, tf_device)
    rates = {key: [] for key in runners}
    print(_TAG + "ready", flush=True)
    for index, line in enumerate(sys.stdin):
        if line.strip() != "round":
            break
        names = list(runners)
        shift = index % len(names)
        with backends.device_scope(tf_device):
            for key in names[shift:] + names[:shift]:
                start = time.perf_counter()
                count = runners[key]()
                rates[key].append(count / (time.perf_counter() - start))
        print(_TAG + "done", flush=True)
    import json

    print(_TAG + "rows " + json.dumps({"rows": rows_from(rates, meta, peak, args.backend),
                                       "machine": machine, "peak": peak}, default=str),
          flush=True)


def compare_backends(args, argv):
    """Parent: one worker per backend; rounds interleaved across them; ratios to the first."""
    import json
    import subprocess
    import threading

    # Each worker runs this module of the benchmarks package, found from the repository root.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    workers = {}
    for backend in args.backends:
        env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": path}
        workers[backend] = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.train_throughput", *_worker_argv(argv, backend)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=env)

    def expect(backend, word):
        worker = workers[backend]
        for line in worker.stdout:
            if line.startswith(_TAG):
                message = line[len(_TAG):].rstrip("\n")
                if message.split(" ", 1)[0] == word:
                    return message[len(word):].strip()
            else:
                print(f"[{backend}] {line}", end="", flush=True)
        raise SystemExit(f"the {backend} worker stopped (exit {worker.wait()}) before '{word}'")

    # Warm-ups run side by side (untimed); every timed round runs alone.
    ready = {}
    threads = [threading.Thread(target=lambda b=b: ready.setdefault(b, expect(b, "ready")))
               for b in args.backends]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    missing = [b for b in args.backends if b not in ready]
    if missing:
        raise SystemExit(f"worker(s) {', '.join(missing)} failed during warm-up")
    rounds = args.rounds or 3
    for index in range(rounds):
        print(f"  round {index + 1}/{rounds}", flush=True)
        shift = index % len(args.backends)
        for backend in args.backends[shift:] + args.backends[:shift]:
            workers[backend].stdin.write("round\n")
            workers[backend].stdin.flush()
            expect(backend, "done")
    results = {}
    for backend in args.backends:
        workers[backend].stdin.write("finish\n")
        workers[backend].stdin.flush()
        results[backend] = json.loads(expect(backend, "rows"))
        workers[backend].wait()

    first = args.backends[0]
    by_key = {(r["spec"], r["mode"]): r for r in results[first]["rows"]}
    rows = []
    for backend in args.backends:
        for row in results[backend]["rows"]:
            base = by_key.get((row["spec"], row["mode"]))
            if base is not None and row["source"] != "torchvision":
                paired = [a / b for a, b in zip(row["images_per_s"]["values"],
                                                base["images_per_s"]["values"])]
                row[f"vs_{first}"] = row["median"] / base["median"]
                row[f"vs_{first}_paired"] = timing.spread(paired)
            rows.append(row)
    print(f"\nTraining throughput by Keras backend, {args.device}; {rounds} rounds, each "
          "round every backend in turn (order rotating), every model of a backend in turn; "
          f"vs {first}: ratio of medians, paired: median and range of the per-round ratios")
    report.print_table(rows, [
        ("model", "model", ""), ("backend", "backend", ""), ("input", "input", ""),
        ("batch", "batch", "d"), ("mode", "mode", ""), ("images/s", "median", ".2f"),
        ("min", "min", ".2f"), ("max", "max", ".2f"),
        (f"vs {first}", f"vs_{first}", ".2f"),
        ("paired", lambda r: r.get(f"vs_{first}_paired") and r[f"vs_{first}_paired"]["median"], ".2f"),
        ("paired min", lambda r: r.get(f"vs_{first}_paired") and r[f"vs_{first}_paired"]["min"], ".2f"),
        ("paired max", lambda r: r.get(f"vs_{first}_paired") and r[f"vs_{first}_paired"]["max"], ".2f"),
        ("GFLOP/s", lambda r: r["achieved_flops"] / 1e9, ".1f"),
        ("% peak", lambda r: r["fraction_of_peak"] and 100 * r["fraction_of_peak"], ".1f"),
    ])
    machine = {b: results[b]["machine"] for b in args.backends}
    report.write_json(args.json, machine, vars(args), rows,
                      peak={b: results[b]["peak"] for b in args.backends})
    return rows


def main(argv=None):
    raw = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(raw)
    if args.backends:
        return compare_backends(args, raw)
    if args.worker:
        return serve_rounds(args)
    tf_device = backends.select_device(args.device)
    if args.backend == "jax" and any(parse_spec(s)[0] == "torchvision" for s in args.models):
        # JAX takes 75% of the GPU's memory at start; torchvision needs its share.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if args.backend == "tensorflow" and args.device == "gpu":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):  # leave memory to torchvision
            tf.config.experimental.set_memory_growth(gpu, True)
    backends.set_seeds(args.seed)
    machine = hardware.machine_description(args.device)
    print(hardware.describe(machine))
    matmul = {"size": 256, "repeats": 2} if args.small else {}
    peak = peaks.peak_flops(args.device, measure=not args.no_measure_peak, cpu_ghz=args.cpu_ghz,
                             **matmul)
    peaks.print_peak(peak)

    groups = {}
    for spec in args.models:
        groups.setdefault(group_key(spec, args.interleave), []).append(spec)
    rows = []
    for key, specs in groups.items():
        print(f"\n{key}: {', '.join(map(label, specs))}; modes {', '.join(args.modes)}", flush=True)
        rows += run_group(args, specs, tf_device, peak)
    references = add_reference_ratios(rows)

    print(f"\nTraining throughput, Keras {machine['keras']} on {args.backend}, {args.device}; "
          f"{args.rounds} interleaved rounds per group (--interleave {args.interleave}); "
          "FLOP/s = 3 x fwd multiply-adds x 2 x images/s; % peak: of the device's peak for "
          "the mode's dtype, % bf16: of its bfloat16 peak (published/theoretical, or the "
          "measured matmul where higher; above)")
    columns = [
        ("model", "model", ""), ("input", "input", ""), ("batch", "batch", "d"),
        ("mode", "mode", ""), ("images/s", "median", ".2f"), ("min", "min", ".2f"),
        ("max", "max", ".2f"), ("IQR", "iqr", ".2f"), ("vs float32", "vs_float32", ".2f"),
    ]
    short = {"keras.applications": "ka", "torchvision": "tv"}
    for ref in references:
        source, name, _, _, compiled = parse_spec(ref)
        header = f"vs {short[source]}:{name}{'+compile' if compiled else ''}"
        columns.append((header, lambda r, ref=ref: r["vs"].get(ref), ".2f"))
    columns += [
        ("fwd GMACs", lambda r: r["forward_multiply_adds"] / 1e9, ".3f"),
        ("GFLOP/s", lambda r: r["achieved_flops"] / 1e9, ".1f"),
        ("% peak", lambda r: r["fraction_of_peak"] and 100 * r["fraction_of_peak"], ".1f"),
        ("% bf16", lambda r: r["fraction_of_bf16_peak"] and 100 * r["fraction_of_bf16_peak"], ".1f"),
    ]
    report.print_table(rows, columns)
    report.write_json(args.json, machine, vars(args), rows, peak=peak, references=references,
                      flops_convention="achieved FLOP/s = 3 x forward multiply-adds x 2 FLOPs x "
                                       "images/s (backward = 2 x forward)")
    return rows


if __name__ == "__main__":
    main()
