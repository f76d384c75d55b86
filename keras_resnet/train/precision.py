"""The training precision "auto" means on a CPU that multiplies bfloat16 natively: measured.

Whether ``mixed_bfloat16`` trains faster than float32 depends on the CPU and the network, not
on the CPU's flags alone: on a 2-core Zen 4 EPYC with AVX512_BF16 it trains ResNet-50 at
224x224 1.18x as fast as float32 (``python -m benchmarks.fast_path``) and CIFAR ResNet-20
anywhere from 0.92x to 1.3x; on a 2-core Xeon with AMX, ResNet-50 1.99x and ResNet-20 from
1.00x to 1.32x (``python -m benchmarks.train_throughput``). So the first time a network trains at an input
shape and batch on a CPU model, :func:`measured_choice` times a few training steps of it in
each of :data:`CANDIDATES` and keeps bfloat16 only when it is at least :data:`MIN_SPEEDUP`
times float32's speed. The figures are cached per CPU model, in ``fast_path.json`` of the
package's cache folder (``~/.keras/keras_resnet``, or ``$KERAS_HOME/keras_resnet``); later runs
read them. A run prints its choice in one line and records it in run.json
(``precision_choice``). An explicit precision, ``--no-fast-path``, a GPU, a backend other than
TensorFlow, several replicas or a CPU without native bfloat16 measure nothing: they keep
``keras_resnet.devices.FAST_PATH``'s settings.

Example:
    >>> choose_from({"float32": 200.0, "mixed_bfloat16": 402.0})
    'mixed_bfloat16'
    >>> choose_from({"float32": 200.0, "mixed_bfloat16": 184.0})
    'float32'
"""

import dataclasses
import datetime
import gc
import json
import os
import statistics
import time
import warnings

import keras

from keras_resnet import devices
from keras_resnet.saving import write_json
from keras_resnet.weights.files import cache_folder

CANDIDATES = ("float32", "mixed_bfloat16")
# bfloat16 rounds every product: taken only where it pays clearly (the serving rule's figure,
# keras_resnet.export.formats.BFLOAT16_MIN_SPEEDUP).
MIN_SPEEDUP = 1.1
# Timed rounds of fit steps per candidate, in turns (this CPU's speed drifts from round to
# round: one candidate timed after the other can be off by 1.5x either way).
ROUNDS, STEPS_PER_ROUND = 5, 4
# Measuring costs about as much as 80 training steps (two traces, 42 steps in all): a run of
# fewer steps than this, with nothing cached, keeps the table's choice rather than pay for it.
MIN_STEPS_TO_MEASURE = 500
CACHE_FILE = "fast_path.json"


def applies(hardware, model, replicas=1):
    """Whether a run with :class:`~keras_resnet.train.config.HardwareConfig` ``hardware``
    that builds ``model`` (a model name, a file, a model) on ``replicas`` replicas chooses its
    precision by measurement (see the module's docstring)."""
    named = isinstance(model, str) and not model.endswith(".keras")  # built here, in a policy
    return (named and hardware.precision == "auto" and hardware.fast_path and replicas == 1
            and keras.backend.backend() == "tensorflow" and not devices.has_gpu()
            and devices.cpu_has_bfloat16())


def cpu_model():
    """The CPU's model name as ``/proc/cpuinfo`` gives it, with its logical CPU count and AMX
    ("AMD EPYC, 2 CPUs"): the measurements' cache key."""
    name = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        info = ""
    for line in info.splitlines():
        if line.startswith("model name"):
            name = line.partition(":")[2].strip()
            break
    amx = ", AMX" if "amx_bf16" in info else ""
    return f"{name}{amx}, {os.cpu_count()} CPUs"


def cache_key(network, input_shape, batch_size):
    """What a measurement depends on besides the CPU: the network (a model name and its
    options), its input shape, the batch and the TensorFlow version."""
    import tensorflow as tf

    shape = "x".join(str(side) for side in input_shape)
    return f"{network}, {shape}, batch {batch_size}, TensorFlow {tf.__version__}"


def choose_from(images_per_second):
    """The precision to train in, from each candidate's measured images/s."""
    speedup = images_per_second.get("mixed_bfloat16", 0.0) / images_per_second["float32"]
    return "mixed_bfloat16" if speedup >= MIN_SPEEDUP else "float32"


def _fit_seconds(model, batches, steps):
    started = time.perf_counter()
    model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    return time.perf_counter() - started


def training_speeds(candidates, batch_size, rounds=ROUNDS, steps=STEPS_PER_ROUND):
    """Images/s of each compiled model of ``candidates`` (``{policy: (model, batches)}``,
    ``batches`` one batch repeated): ``model.fit`` as the run calls it, after an untimed epoch
    of one step (tracing); ``rounds`` rounds of ``steps`` steps, the candidates taking turns in
    each round so that a drift of the machine's speed hits them alike; the median round."""
    for model, batches in candidates.values():
        _fit_seconds(model, batches, 1)
    seconds = {policy: [] for policy in candidates}
    for _ in range(rounds):
        for policy, (model, batches) in candidates.items():
            seconds[policy].append(_fit_seconds(model, batches, steps))
    return {policy: steps * batch_size / statistics.median(times) for policy, times in seconds.items()}


@dataclasses.dataclass
class Choice:
    """A measured precision: what ``images_per_second`` gave, whether it came from the cache."""

    precision: str
    images_per_second: dict
    key: str
    cpu: str
    cached: bool
    cache_file: str

    def record(self):
        """What run.json says of it (``precision_choice``)."""
        return {"precision": self.precision, "measured_images_per_second": self.images_per_second,
                "cpu": self.cpu, "measured_for": self.key, "cached": self.cached}

    def line(self):
        """The line a run prints."""
        rates = self.images_per_second
        ratio = rates["mixed_bfloat16"] / rates["float32"]
        when = "measured before, from" if self.cached else "measured now, saved to"
        return (f"Precision {self.precision} for this CPU ({self.cpu}): "
                f"mixed_bfloat16 {rates['mixed_bfloat16']:.1f} images/s, float32 "
                f"{rates['float32']:.1f} ({ratio:.2f}x; bfloat16 needs {MIN_SPEEDUP}x); "
                f"{when} {self.cache_file}.")


def read_cache(path):
    """The cached measurements at ``path``: ``{cpu: {key: figures}}``; empty when the file is
    missing or unreadable (it is measured again and rewritten)."""
    try:
        with open(path) as f:
            cached = json.load(f)
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) else {}


def _cached_rates(known, cpu, key):
    entry = known.get(cpu)
    figures = entry.get(key) if isinstance(entry, dict) else None
    rates = figures.get("images_per_second") if isinstance(figures, dict) else None
    valid = isinstance(rates, dict) and all(
        isinstance(rates.get(c), (int, float)) and rates[c] > 0 for c in CANDIDATES)
    return rates if valid else None


def measured_choice(network, build, input_shape, batch_size, *, measure=True, cache_dir=None,
                    speed=None):
    """The precision to train ``network`` in on this CPU, measured once and cached.

    Args:
        network: what is trained, as the cache names it ("resnet20", with its options).
        build: ``build()`` gives ``(model, batches)`` under the dtype policy in force: the
            model compiled as the run compiles it, and one batch of its data repeated.
        input_shape, batch_size: the run's (per replica).
        measure: False reads the cache only (None when it has nothing).
        cache_dir: the cache folder's base (default ``$KERAS_HOME`` or ``~/.keras``).
        speed: ``speed({policy: (model, batches)}, batch_size)`` gives ``{policy: images/s}``
            (default :func:`training_speeds`).

    Returns:
        A :class:`Choice`, or None. Keras' dtype policy is float32 after a measurement.
    """
    path = os.path.join(cache_folder(cache_dir), CACHE_FILE)
    cpu, key = cpu_model(), cache_key(network, input_shape, batch_size)
    rates = _cached_rates(read_cache(path), cpu, key)
    if rates is not None:
        return Choice(choose_from(rates), rates, key, cpu, True, path)
    if not measure:
        return None
    candidates = {}
    try:
        for policy in CANDIDATES:
            keras.config.set_dtype_policy(policy)
            candidates[policy] = build()
        measured = (speed or training_speeds)(candidates, batch_size)
    finally:
        keras.config.set_dtype_policy("float32")
        candidates.clear()
        gc.collect()
    rates = {policy: round(float(measured[policy]), 2) for policy in CANDIDATES}
    known = read_cache(path)  # another run may have written meanwhile
    if not isinstance(known.get(cpu), dict):
        known[cpu] = {}
    known[cpu][key] = {
        "images_per_second": rates,
        "measured": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_json(path, known)
    except OSError as error:  # a read-only home: this run still has its figures
        warnings.warn(f"Could not cache the precision measurement in {path}: {error}", stacklevel=2)
    return Choice(choose_from(rates), rates, key, cpu, False, path)


def choose_for_run(setup, config, info, build):
    """Measure (or read) the precision of a run about to build its model: set Keras' policy,
    ``setup.policy`` and ``setup.precision_choice``, and print the choice. Nothing happens
    where the choice is not measured (:func:`applies`) or the run is short with nothing cached
    (:data:`MIN_STEPS_TO_MEASURE`).

    Args:
        setup: the run's ``keras_resnet.train.setup.RunSetup`` (seeded, policy from the table).
        config: its resolved ``RunConfig``.
        info: its training data's ``DatasetInfo``.
        build: ``build()`` gives ``(model, batches)`` under the policy in force: the model
            the run trains, compiled as it compiles it, and one batch of its data repeated.
    """
    replicas = setup.strategy.num_replicas_in_sync
    if not applies(config.hardware, config.model, replicas):
        return None
    batch = setup.global_batch
    steps = config.recipe.epochs * (info.num_examples // batch) if info.num_examples else 0
    options = "".join(f", {k}={v!r}" for k, v in sorted(dict(config.model_options).items()))
    network = f"{config.model_name}{options}, {info.task_kind}, {info.num_classes} classes"
    if config.head:
        network += f", {config.head} head"
    choice = measured_choice(network, build, tuple(info.image_shape), batch,
                             measure=steps >= MIN_STEPS_TO_MEASURE)
    if choice is None:
        return None
    keras.utils.set_random_seed(setup.seed)  # the timed models drew weights from it
    keras.config.set_dtype_policy(choice.precision)
    setup.policy, setup.precision_choice = choice.precision, choice.record()
    print(choice.line())
    return choice
