"""Files written by the package before its Task object and its blocks made of parts
(``tests/fixtures/make_legacy_fixtures.py``, run at commit cc02630) load and behave the same."""

import json
import pathlib

import numpy as np
import pytest

import keras_resnet

LEGACY = pathlib.Path(__file__).resolve().parent / "fixtures" / "legacy"


@pytest.mark.parametrize("name", ["blocks", "classifier", "multilabel", "resnet50v2_narrow"])
def test_an_old_keras_file_gives_the_same_outputs(name):
    model = keras_resnet.load_model(LEGACY / f"{name}.keras", compile=False)
    saved = np.load(LEGACY / f"{name}.npz")
    np.testing.assert_allclose(model.predict(saved["inputs"], verbose=0), saved["outputs"],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["classifier", "multilabel"])
def test_an_old_saved_model_gives_the_same_scores(name):
    from keras_resnet.export import SavedModelRunner

    folder = LEGACY / f"export_{name}" / "resnet8" / "1"
    saved = np.load(LEGACY / f"{name}.npz")
    runner = SavedModelRunner(str(folder))
    scores = runner(saved["inputs"])
    np.testing.assert_allclose(scores, saved["outputs"], rtol=1e-4, atol=1e-5)
    metadata = json.loads((folder / "assets.extra" / "keras_resnet.json").read_text())
    assert metadata["task"] == ("multilabel" if name == "multilabel" else "single_label")
