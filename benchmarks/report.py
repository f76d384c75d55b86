"""Command-line arguments every benchmark shares, and its output: FLOP/s figures, text tables,
JSON results in ``benchmarks/results/``.

Imports neither Keras nor TensorFlow.
"""

import json
import os

from benchmarks import backends

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def add_common_arguments(parser, json_name, peak=False, backend=False):
    """``--device``, ``--seed``, ``--json`` (default ``benchmarks/results/<json_name>``), with
    ``peak`` ``--cpu-ghz`` for the theoretical peak, with ``backend`` ``--backend``."""
    parser.add_argument("--device", choices=backends.DEVICES, default="cpu",
                        help="cpu: hide the GPUs; gpu: run on the first GPU (fails when there is none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random input and weight")
    parser.add_argument("--json", default=os.path.join(RESULTS_DIR, json_name),
                        help="where to write the results (default: %(default)s)")
    if peak:
        parser.add_argument("--cpu-ghz", type=float, default=None,
                            help="CPU clock for the theoretical peak (default: cpufreq's "
                                 "maximum, else 'cpu MHz' of /proc/cpuinfo, which under a "
                                 "hypervisor is the nominal clock)")
    if backend:
        parser.add_argument("--backend", choices=backends.BACKENDS, default=None,
                            help="the Keras backend (default: $KERAS_BACKEND, else tensorflow)")
    return parser



def format_flops(value):
    """``value`` FLOP/s with 3 significant digits and a unit (``"1.23 TFLOP/s"``); "-" for None."""
    if value is None:
        return "-"
    for unit, scale in (("TFLOP/s", 1e12), ("GFLOP/s", 1e9), ("MFLOP/s", 1e6)):
        if value >= scale:
            scaled = value / scale
            return f"{scaled:.3g} {unit}" if scaled < 100 else f"{scaled:.0f} {unit}"
    return f"{value:.3g} FLOP/s"


def print_table(rows, columns):
    """Print ``rows`` (dicts) as an aligned text table.

    Args:
        columns: (header, key or callable(row), format spec) triples; text columns are
            left-aligned, numbers right-aligned; None prints "-".
    """
    cells, numeric = [], []
    for _header, key, spec in columns:
        column = []
        for row in rows:
            value = key(row) if callable(key) else row.get(key)
            column.append("-" if value is None else format(value, spec) if spec else str(value))
        cells.append(column)
        numeric.append(bool(spec) and not spec.endswith("s"))
    widths = [max([len(h)] + [len(c) for c in col]) for (h, _, _), col in zip(columns, cells)]

    def line(values):
        return "  ".join(v.rjust(w) if n else v.ljust(w)
                         for v, w, n in zip(values, widths, numeric)).rstrip()

    print(line([h for h, _, _ in columns]))
    print("  ".join("-" * w for w in widths))
    for i in range(len(rows)):
        print(line([col[i] for col in cells]))


def write_json(path, machine, settings, results, **extra):
    """Write ``{"machine", "settings", "results", ...}`` to ``path``; returns the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"machine": machine, "settings": settings, "results": results, **extra}, f,
                  indent=2, default=str)
    print(f"\nwrote {os.path.relpath(path)}")
    return path
