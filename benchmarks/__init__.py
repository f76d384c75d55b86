"""Benchmarks of keras_resnet: scripts that print speed figures (a table on stdout) and write
them, with a description of the machine, as JSON to ``benchmarks/results/``. They assert
nothing about time.

Run a script as a module of this package, from the repository root:

    python -m benchmarks.train_throughput --small
    python -m benchmarks.inference --models resnet20
    python -m benchmarks.peaks                    # the machine's peak FLOP/s
    python -m benchmarks.<script> --help

Scripts: ``train_throughput``, ``fast_path``, ``inference``, ``cost_vs_depth``,
``input_pipeline``, ``fine_tuning``, ``serving``; each takes ``--device cpu|gpu``, ``--seed`` and
``--json``. The parts they share, one module per concern:

- ``backends``: the Keras backend and the device (``set_backend``, ``select_device``,
  ``device_scope``, ``mixed_policy``, ``set_seeds``);
- ``timing``: statistics of repeated measurements and interleaved rounds (``spread``,
  ``percentile``, ``interleaved``);
- ``feeds``: what ``model.fit`` is fed and how it is timed (``random_batch``,
  ``cached_dataset``, ``fit_runner``, ``compile_for_benchmark``);
- ``hardware``: what the figures were measured on (``cpu_info``, ``gpu_info``,
  ``tf32_enabled``, ``machine_description``, ``describe``);
- ``peaks``: theoretical and measured peak FLOP/s (``peak_flops``, ``peak_for``,
  ``print_peak``, ``measure_matmul``); run alone it prints them;
- ``report``: shared arguments and output (``add_common_arguments``, ``format_flops``,
  ``print_table``, ``write_json``, ``RESULTS_DIR``).

Importing this package or any of those modules imports neither Keras nor TensorFlow, so a
script can parse its arguments and choose its backend and device before the backend starts.
It sets ``KERAS_RESNET_QUIET=1`` (unless set already): the tables print without TensorFlow's
C++ log lines.
"""

import os

os.environ.setdefault("KERAS_RESNET_QUIET", "1")
