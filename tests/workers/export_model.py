"""Export saved models to float formats in a fresh interpreter and report parity.

Run by tests/harness.py, one process for every case of a session, in the background while the
cases are checked: what a converter holds goes back to the system when the process ends (the
models are small, 64x64 inputs; at full size tf2onnx's graphs alone take GBs for a ResNet-50):
    python export_model.py MANIFEST.json OUT.json

The manifest lists ``{"name", "keras", "inputs", "formats"}`` entries: a ``.keras`` file, an
``.npy`` of inputs and the float formats to export it to, next to the file. Writes
``{name: {format: {"max_abs_diff", "top1_agreement"}}}``, or ``{name: {"error": traceback}}``
for a case that failed (the others still run).
"""

import gc
import json
import os
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_resnet import export  # noqa: E402  (also registers the layers)

gc.collect()  # the imports' objects out of the collector's walks, as the console script does
gc.freeze()


def exported(entry):
    """``{format: parity}`` of one manifest entry's exports."""
    model = keras.saving.load_model(entry["keras"], safe_mode=True)
    inputs = np.load(entry["inputs"])
    stem = os.path.splitext(entry["keras"])[0]
    reports = {}
    for fmt in entry["formats"]:
        path = stem + export.SUFFIXES[fmt]
        export.FILE_EXPORTERS[fmt](model, path)
        report = export.parity_report(model, path, inputs, latency_runs=1)
        reports[fmt] = {key: report[key] for key in ("max_abs_diff", "top1_agreement")}
    return reports


manifest_path, out_path = sys.argv[1], sys.argv[2]
with open(manifest_path) as f:
    manifest = json.load(f)
results = {}
for entry in manifest:
    try:
        results[entry["name"]] = exported(entry)
    except Exception:  # noqa: BLE001  (reported to the case's test, the other cases go on)
        results[entry["name"]] = {"error": traceback.format_exc()[-4000:]}
    keras.backend.clear_session()
    gc.collect()
with open(out_path + ".tmp", "w") as f:
    json.dump(results, f)
os.replace(out_path + ".tmp", out_path)
