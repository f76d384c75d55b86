"""Export one saved model to float formats in a fresh interpreter and report parity.

Run by tests/harness.py, one process per model, so what a converter holds (tf2onnx's graphs
take GBs for a ResNet-50) is returned to the system when the process ends:
    python export_model.py MODEL.keras INPUTS.npy FOLDER FORMAT [FORMAT ...]

Prints one JSON line: ``{format: parity_report(...)}`` of the loaded model and each export.
"""

import gc
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_resnet import export  # noqa: E402  (also registers the layers)

gc.collect()  # the imports' objects out of the collector's walks, as the console script does
gc.freeze()

model_path, inputs_path, folder, *formats = sys.argv[1:]
model = keras.saving.load_model(model_path, safe_mode=True)
inputs = np.load(inputs_path)
name = os.path.splitext(os.path.basename(model_path))[0]
reports = {}
for fmt in formats:
    path = os.path.join(folder, f"{name}{export.SUFFIXES[fmt]}")
    export.FILE_EXPORTERS[fmt](model, path)
    report = export.parity_report(model, path, inputs, latency_runs=1)
    reports[fmt] = {key: report[key] for key in ("max_abs_diff", "top1_agreement")}
print(json.dumps(reports))
