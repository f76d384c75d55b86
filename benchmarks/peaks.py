"""The machine's peak FLOP/s, theoretical and measured, which the benchmarks' fractions of peak
divide by.

Run it alone to print the machine description and the peak FLOP/s (from the repository root):

    python -m benchmarks.peaks                  # this CPU: theoretical peak + measured matmul
    python -m benchmarks.peaks --device gpu     # GPU:0: published peak + measured matmul
    python -m benchmarks.peaks --device gpu --backend jax   # the same, measured with JAX

Peak FLOP/s:

- CPU, theoretical: physical cores x clock x FLOPs/cycle/core, the FLOPs/cycle read off the SIMD
  flags in /proc/cpuinfo (AVX-512 / AVX2 + FMA, avx512_bf16, AMX) and the vendor (AMD Zen 4
  runs 512-bit FMAs on 256-bit units); the assumptions are printed and stored with the figure.
- CPU, measured: the best of a few timed float32 (and bfloat16) 2048x2048 matmuls of the backend
  (``tf.matmul``, ``jax.numpy.matmul`` jitted, ``torch.matmul``).
- GPU, theoretical: a table of published dense peaks keyed by device name (H100 SXM: 989
  TFLOP/s bf16/fp16 tensor, 494 TF32 tensor, 67 fp32; A100: 312 / 156 / 19.5; ...).
- GPU, measured: the best of a few timed 8192x8192 matmuls of the backend per dtype.

The *fraction of peak* the scripts print uses the theoretical peak of the dtype the convolutions
run in: float32 on CPU; on GPU TF32 tensor cores when TensorFlow has TF32 enabled (its
default) and the GPU has them, else fp32; mixed precision: bf16 (CPU, when the CPU has bf16
instructions, else fp32) or fp16 tensor peak (GPU). Where the measured matmul beats that
theoretical figure (a virtual machine reporting its nominal clock while the cores boost), the
theoretical figure is wrong and the measured one is used instead; the output says so and the
clock the matmul implies. Both fractions are in the JSON files.

Importing this module imports neither Keras nor TensorFlow; the matmuls use the Keras backend's
own arrays, and nothing imports TensorFlow unless the backend is TensorFlow.
"""

import argparse
import re
import time

from benchmarks import backends, hardware, report

# Published dense peaks (no structured sparsity), TFLOP/s, of fp32 (CUDA cores) and of tf32,
# bf16 and fp16 tensor cores: (label, regular expression on TensorFlow's device name, peaks).
# The first match wins; "NVIDIA H100 80GB HBM3" is the SXM5 part.
_H100_SXM = {"float32": 67.0, "tf32": 494.7, "bfloat16": 989.4, "float16": 989.4}
GPU_PEAKS_TFLOPS = (
    ("H100 PCIe", r"H100.*PCIe", {"float32": 51.2, "tf32": 378.0, "bfloat16": 756.0, "float16": 756.0}),
    ("H100 NVL", r"H100 NVL", {"float32": 60.0, "tf32": 417.5, "bfloat16": 835.0, "float16": 835.0}),
    ("H100 SXM", r"\bH100\b", _H100_SXM),
    ("H200 / GH200", r"\bG?H200\b", _H100_SXM),
    ("A100", r"\bA100\b", {"float32": 19.5, "tf32": 156.0, "bfloat16": 312.0, "float16": 312.0}),
    ("L40S", r"\bL40S\b", {"float32": 91.6, "tf32": 183.0, "bfloat16": 362.0, "float16": 362.0}),
    ("L4", r"\bL4\b", {"float32": 30.3, "tf32": 60.0, "bfloat16": 121.0, "float16": 121.0}),
    ("A10", r"\bA10\b", {"float32": 31.2, "tf32": 62.5, "bfloat16": 125.0, "float16": 125.0}),
    ("V100 SXM2", r"\bV100\b", {"float32": 15.7, "tf32": None, "bfloat16": None, "float16": 125.0}),
    ("T4", r"\bT4\b", {"float32": 8.1, "tf32": None, "bfloat16": None, "float16": 65.0}),
)


def cpu_theoretical_peak(info=None, ghz=None):
    """Theoretical float32 and bfloat16 FLOP/s of this CPU from its SIMD flags.

    Returns:
        dict with ``float32`` and ``bfloat16`` (FLOP/s), ``cores``, ``ghz``,
        ``flops_per_cycle`` and the ``assumptions`` made.
    """
    info = info or hardware.cpu_info()
    flags = set(info["flags"])
    amd = info["vendor"] == "AuthenticAMD"
    assumptions = []
    if "avx512f" in flags and amd and (info["family"] or 0) < 26:
        fp32 = 32
        assumptions.append("AVX-512 on AMD family < 26 (Zen 4): 512-bit FMAs run on two 256-bit "
                           "FMA pipes, 2 x 8 fp32 lanes x 2 FLOPs = 32 FLOPs/cycle/core")
    elif "avx512f" in flags:
        fp32 = 64
        assumptions.append("AVX-512 with 2 FMA units of 512 bits (Intel Xeon Gold/Platinum, AMD "
                           "Zen 5): 2 x 16 fp32 lanes x 2 FLOPs = 64 FLOPs/cycle/core (CPUs "
                           "with one 512-bit FMA unit reach half)")
    elif {"avx2", "fma"} <= flags:
        fp32 = 32
        assumptions.append("AVX2 + FMA with 2 FMA units of 256 bits: 2 x 8 fp32 lanes x 2 FLOPs "
                           "= 32 FLOPs/cycle/core")
    elif "avx" in flags:
        fp32 = 16
        assumptions.append("AVX without FMA: one 8-lane add + one 8-lane multiply per cycle")
    else:
        fp32 = 8 if info["architecture"] in ("x86_64", "AMD64") else 4
        assumptions.append(f"no AVX flags read: {fp32} fp32 FLOPs/cycle/core assumed (SSE/NEON)")
    if "amx_bf16" in flags:
        bf16 = 1024
        assumptions.append("AMX-BF16 tiles: 1024 bf16 FLOPs/cycle/core")
    elif "avx512_bf16" in flags:
        bf16 = 2 * fp32
        assumptions.append("avx512_bf16 (VDPBF16PS): twice the fp32 rate for bf16 dot products")
    else:
        bf16 = fp32
        assumptions.append("no bf16 instructions: bf16 peak = fp32 peak")
    cores = info["physical_cores"]
    assumptions.append(f"{cores} physical cores usable by this process (SMT siblings share "
                       f"the FMA units, so they are not counted twice)")
    if ghz:
        mhz, source = ghz * 1000, "--cpu-ghz"
    elif info["max_mhz"]:
        mhz, source = info["max_mhz"], "cpufreq cpuinfo_max_freq (maximum boost clock)"
    elif info["mhz"]:
        mhz, source = info["mhz"], "'cpu MHz' of /proc/cpuinfo" + (
            " (nominal clock reported by the hypervisor; boost clocks may be higher)"
            if info["hypervisor"] else "")
    else:
        mhz, source = 2000.0, "no clock found: 2.0 GHz assumed"
    assumptions.append(f"clock {mhz / 1000:.2f} GHz from {source}, held on all cores")
    ghz = mhz / 1000
    return {"float32": cores * ghz * 1e9 * fp32, "bfloat16": cores * ghz * 1e9 * bf16,
            "cores": cores, "ghz": ghz, "flops_per_cycle": {"float32": fp32, "bfloat16": bf16},
            "assumptions": assumptions}


def gpu_theoretical_peak(name):
    """Published dense peak FLOP/s of a GPU by name; None when the name is not in the table."""
    for key, pattern, table in GPU_PEAKS_TFLOPS:
        if re.search(pattern, name, re.IGNORECASE):
            return {"table_key": key,
                    **{k: None if v is None else v * 1e12 for k, v in table.items()}}
    return None


def measure_matmul(device, dtype="float32", size=None, repeats=None, rounds=3):
    """Best FLOP/s of ``rounds`` timings of ``repeats`` chained square matmuls on ``device``,
    with the Keras backend's own arrays (TensorFlow, JAX or PyTorch)."""
    size = size or (8192 if device == "gpu" else 2048)
    repeats = repeats or (20 if device == "gpu" else 4)
    chain = {"jax": _jax_matmul_chain, "torch": _torch_matmul_chain}.get(
        backends.backend_name(), _tf_matmul_chain)(device, dtype, size, repeats)
    chain()  # trace, compile, warm up
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        chain()
        best = max(best, 2 * size**3 * repeats / (time.perf_counter() - start))
    return {"dtype": dtype, "size": size, "repeats": repeats, "flops": best}


def _tf_matmul_chain(device, dtype, size, repeats):
    import tensorflow as tf

    with tf.device("/GPU:0" if device == "gpu" else "/CPU:0"):
        generator = tf.random.Generator.from_seed(0)
        # Entries of variance 1/size: a chain of products keeps its scale (no overflow in
        # float16). The matrices are arguments, not captured constants, so that grappler can
        # neither fold the products at trace time nor merge repeated identical ones.
        a = tf.cast(generator.normal((size, size)), dtype)
        b = tf.cast(generator.normal((size, size), stddev=size**-0.5), dtype)

    @tf.function
    def chain(c, b):
        for _ in range(repeats):
            c = tf.matmul(c, b)
        return tf.reduce_sum(tf.cast(c[:1, :1], tf.float32))

    def run():
        with tf.device("/GPU:0" if device == "gpu" else "/CPU:0"):
            return chain(a, b).numpy()

    return run


def _jax_matmul_chain(device, dtype, size, repeats):
    import jax
    import jax.numpy as jnp

    target = jax.devices("gpu" if device == "gpu" else "cpu")[0]
    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    a = jax.device_put(jax.random.normal(ka, (size, size)).astype(dtype), target)
    b = jax.device_put((jax.random.normal(kb, (size, size)) * size**-0.5).astype(dtype), target)

    @jax.jit
    def chain(c, b):  # arguments, not constants: XLA cannot fold or merge the products
        for _ in range(repeats):
            c = c @ b
        return jnp.sum(c[:1, :1].astype(jnp.float32))

    return lambda: chain(a, b).block_until_ready()


def _torch_matmul_chain(device, dtype, size, repeats):
    import torch

    target = torch.device("cuda" if device == "gpu" else "cpu")
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(target, getattr(torch, dtype))
    b = (torch.randn(size, size, generator=generator) * size**-0.5).to(target, getattr(torch, dtype))

    def run():
        with torch.no_grad():
            c = a
            for _ in range(repeats):
                c = c @ b
            value = float(c[:1, :1].float().sum())  # waits for the device
        return value

    return run


_PEAK_CACHE = {}


def peak_flops(device, measure=True, cpu_ghz=None, size=None, repeats=None):
    """Theoretical and measured peak FLOP/s of ``device`` ("cpu"/"gpu"), per dtype.

    ``size`` and ``repeats`` set the measured matmuls (default 2048 x 4 on CPU, 8192 x 20 on
    GPU; smaller ones measure less than the peak).

    Returns:
        dict: ``theoretical`` (dtype -> FLOP/s, plus notes), ``measured`` (dtype -> FLOP/s of a
        large matmul, when ``measure``), ``basis`` (which figure fractions use).
    """
    key = (device, measure, cpu_ghz, size, repeats)
    if key in _PEAK_CACHE:
        return _PEAK_CACHE[key]
    if device == "cpu":
        theoretical = cpu_theoretical_peak(ghz=cpu_ghz)
        mixed_dtype = "bfloat16"
        source = "derived from /proc/cpuinfo"
    else:
        name = hardware.gpu_info()[0]["name"]
        theoretical = gpu_theoretical_peak(name) or {}
        theoretical["assumptions"] = [
            f"published dense peaks of the {theoretical['table_key']} (no sparsity, boost clock)"
            if theoretical.get("table_key")
            else f"{name!r} is not in GPU_PEAKS_TFLOPS: no theoretical peak"
        ]
        mixed_dtype = "float16/bfloat16"
        source = "published table, keyed by device name"
    measured = {}
    if measure:
        dtypes = ("float32", "bfloat16") if device == "cpu" else ("float32", "bfloat16", "float16")
        for dtype in dtypes:
            try:
                measured[dtype] = measure_matmul(device, dtype, size, repeats)["flops"]
            except Exception as error:  # noqa: BLE001  (a dtype the device has no kernel for)
                measured[dtype] = None
                theoretical.setdefault("assumptions", []).append(
                    f"{dtype} matmul could not be measured: {type(error).__name__}")
    tf32 = device == "gpu" and hardware.tf32_enabled() and theoretical.get("tf32")
    exceeded = []
    for dtype, value in measured.items():
        if value and theoretical.get(dtype) and value > theoretical[dtype]:
            exceeded.append(dtype)
            note = (f"the measured {dtype} matmul beats the theoretical peak, so the clock or "
                    "the FLOPs/cycle assumed is too low")
            if device == "cpu":
                implied = value / (theoretical["cores"] * theoretical["flops_per_cycle"][dtype])
                note += (f": it implies at least {implied / 1e9:.2f} GHz (pass --cpu-ghz with the "
                         f"all-core boost clock)")
            theoretical["assumptions"].append(note)
    float32_kind = (f"TF32 tensor cores, which {backends.backend_name()} uses for float32 by "
                    "default" if tf32 else "float32")
    basis = ("fractions of peak use the theoretical peak of the dtype the convolutions run in "
             f"({float32_kind} for float32 models, {mixed_dtype} for mixed precision), or the "
             "measured matmul where that is higher")
    if exceeded:
        basis += f" (here: {', '.join(exceeded)})"
    result = {
        "device": device,
        "theoretical": theoretical,
        "theoretical_source": source,
        "measured": measured,
        "float32_basis": "tf32" if tf32 else "float32",
        "basis": basis,
    }
    _PEAK_CACHE[key] = result
    return result


def peak_for(peak, precision):
    """The peak FLOP/s a model trained in ``precision`` is compared with.

    Returns:
        dict: ``theoretical`` and ``measured`` (matmul) peaks of the compute dtype, and
        ``reference``, the larger of the two, which fractions of peak divide by.
    """
    mixed = precision.startswith("mixed")
    compute = ("float16" if precision == "mixed_float16" else "bfloat16" if mixed
               else "float32")
    if peak["device"] == "cpu":
        key = compute
    else:
        key = compute if mixed else peak["float32_basis"]
    theoretical = peak["theoretical"].get(key)
    measured = peak["measured"].get(compute)
    values = [v for v in (theoretical, measured) if v]
    return {"theoretical": theoretical, "measured": measured,
            "reference": max(values) if values else None}


def print_peak(peak):
    """Print :func:`peak_flops`' figures per dtype, with its assumptions and basis.

    Example: ``print_peak(peak_flops("cpu"))``.
    """
    theoretical = peak["theoretical"]
    print(f"Peak FLOP/s of {peak['device']} (theoretical: {peak['theoretical_source']}):")
    for dtype in ("float32", "tf32", "bfloat16", "float16"):
        value = theoretical.get(dtype)
        measured = peak["measured"].get(dtype)
        if value is None and measured is None:
            continue
        line = f"  {dtype:9s} theoretical {report.format_flops(value):>13s}"
        if dtype in peak["measured"]:
            line += f"   measured matmul {report.format_flops(measured):>13s}"
            if value and measured:
                line += f" ({100 * measured / value:.0f}% of theoretical)"
        print(line)
    for note in theoretical.get("assumptions", []):
        print(f"  - {note}")
    print(f"  - {peak['basis']}")



def main():
    """``python -m benchmarks.peaks``: machine description and peak FLOP/s, also as JSON."""
    parser = argparse.ArgumentParser(description="Machine description and peak FLOP/s.")
    report.add_common_arguments(parser, "machine.json", peak=True, backend=True)
    parser.add_argument("--no-measure", action="store_true", help="skip the matmul measurement")
    args = parser.parse_args()
    backends.set_backend(args.backend)
    backends.select_device(args.device)
    machine = hardware.machine_description(args.device)
    print(hardware.describe(machine))
    cpu = machine["cpu"]
    print(f"CPU flags: {' '.join(cpu['flags'])}; clock {cpu['mhz']} MHz"
          + (f" (max {cpu['max_mhz']} MHz)" if cpu["max_mhz"] else ""))
    peak = peak_flops(args.device, measure=not args.no_measure, cpu_ghz=args.cpu_ghz)
    print_peak(peak)
    report.write_json(args.json, machine, vars(args), {"peak": peak})


if __name__ == "__main__":
    main()
