"""Load saved models in a fresh interpreter and write what they predict.

Run by tests/harness.py under the backend it is testing (``KERAS_BACKEND``):
    python load_models.py MANIFEST.json OUT.npz

The manifest lists ``{"name", "keras", "inputs", "backends"}`` entries: a ``.keras`` file, an
``.npy`` of inputs and the backends to load it on. Only ``import keras_resnet`` registers the
layers; loading is Keras' own, in safe mode.
"""

import gc
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_resnet  # noqa: E402,F401  (registers the layers)

gc.collect()  # the imports' objects out of the collector's walks, as the console script does
gc.freeze()

manifest_path, out_path = sys.argv[1], sys.argv[2]
with open(manifest_path) as f:
    manifest = json.load(f)
outputs, facts = {}, {}
for entry in manifest:
    if keras.backend.backend() not in entry["backends"]:
        continue
    model = keras.saving.load_model(entry["keras"], safe_mode=True)
    predicted = model.predict(np.load(entry["inputs"]), verbose=0)
    outputs[entry["name"]] = np.asarray(keras.ops.convert_to_numpy(predicted), np.float32)
    # What else the file must bring back: the weight-decay losses and our registered layers.
    facts[entry["name"]] = {"losses": len(model.losses),
                            "layer_types": sorted({type(layer).__name__ for layer in model.layers})}
np.savez(out_path, backend=keras.backend.backend(), facts=json.dumps(facts), **outputs)
print("LOADED", len(outputs), keras.backend.backend())
