"""Validation never on the test split: the data set's own validation split, else a seeded,
stratified share of each class held out of the training split (§4.2's 45k/5k for CIFAR),
or none at all when asked; what run.json records of it."""

import csv
import hashlib
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from keras_resnet import data, runs
from keras_resnet.data.sources import get_source
from keras_resnet.errors import InvalidArgument
from keras_resnet.train import flow
from keras_resnet.train.config import DataConfig, RunConfig
from keras_resnet.train.setup import load_splits


def _folder(root, counts, splits=("train", "test"), side=10):
    """root/<split>/<class>/<i>.png, every image different (its index painted in)."""
    rng = np.random.default_rng(0)
    for split in splits:
        for name, count in counts.items():
            os.makedirs(os.path.join(root, split, name))
            for i in range(count):
                pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(os.path.join(root, split, name, f"{i}.png"))
    return str(root)


def _examples(source, split):
    """``{sha1 of the example's path or encoded bytes: label}`` of a source's split."""
    dataset, count = source.make(split)
    examples = {hashlib.sha1(bytes(encoded)).hexdigest(): int(label)
                for encoded, label in dataset.as_numpy_iterator()}
    assert len(examples) == count
    return examples


def _held_out(name, **options):
    source = get_source(name, **options)
    held = data.holdout.with_holdout(source, data.Holdout())
    return (_examples(source, "train"), _examples(held, "train"), _examples(held, "validation"),
            _examples(source, "test"))


def test_the_mask_holds_out_the_share_of_each_class_and_the_same_images_every_time():
    labels = np.repeat(np.arange(10), 5000)  # CIFAR-10's training split
    mask = data.holdout.held_out_mask(labels, 0.1, seed=0)
    assert mask.sum() == 5000 and (np.bincount(labels[mask]) == 500).all()  # §4.2's 45k/5k
    np.testing.assert_array_equal(mask, data.holdout.held_out_mask(labels, 0.1, seed=0))
    assert (mask != data.holdout.held_out_mask(labels, 0.1, seed=1)).any()
    uneven = np.array([0] * 7 + [1] * 33 + [2])  # round(0.7), round(3.3), round(0.1)
    assert np.bincount(uneven[data.holdout.held_out_mask(uneven, 0.1, 0)], minlength=3).tolist() == [1, 3, 0]


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, True, "0.1"])
def test_a_fraction_outside_zero_to_one_is_refused(fraction):
    with pytest.raises(InvalidArgument, match="validation_fraction"):
        data.Holdout(fraction)
    with pytest.raises(InvalidArgument, match="validation_fraction"):
        DataConfig("digits", validation_fraction=fraction)


def test_a_folder_without_validation_holds_out_of_train_and_never_touches_test(tmp_path):
    root = _folder(tmp_path / "photos", {"cat": 20, "dog": 30})
    splits, test_examples = load_splits(root, 4, data_dir=None, download=False, seed=0)
    assert splits.validation_split == "holdout"
    assert splits.validation_record == {"split": "holdout", "fraction": 0.1, "seed": 0,
                                        "examples": 5, "of": "train"}
    assert splits.info.num_examples == 45 and test_examples == 50
    assert len(data.as_numpy(splits.validation)[1]) == 5
    whole, train, validation, test = _held_out(root)
    assert sorted(np.bincount(list(validation.values()))) == [2, 3]  # 10% of 20 and of 30
    assert not set(validation) & set(train) and {**validation, **train} == whole
    assert not set(test) & set(whole)



def test_a_dataset_with_its_own_validation_split_keeps_it(tmp_path):
    root = _folder(tmp_path / "photos", {"a": 4, "b": 4}, splits=("train", "validation", "test"))
    splits, _ = load_splits(root, 2, data_dir=None, download=False, seed=0)
    assert splits.validation_split == "validation" and splits.validation_record == {"split": "validation"}
    assert splits.info.num_examples == 8


def test_validation_none_trains_on_the_whole_training_split(tmp_path):
    root = _folder(tmp_path / "photos", {"a": 10, "b": 10})
    splits, _ = load_splits(root, 4, data_dir=None, download=False, seed=0, validation="none")
    assert splits.validation is None and splits.validation_split is None
    assert splits.info.num_examples == 20
    with pytest.raises(InvalidArgument, match="`validation` must be one of auto, none; got 'test'"):
        load_splits(root, 4, data_dir=None, download=False, seed=0, validation="test")


def test_too_few_images_to_hold_out_is_a_clear_error(tmp_path):
    root = _folder(tmp_path / "photos", {"a": 2, "b": 2})
    with pytest.raises(InvalidArgument, match="too few to hold out 10%.*validation='none'"):
        load_splits(root, 2, data_dir=None, download=False, seed=0)


def test_tfds_cifar10_holds_out_a_tenth_of_its_training_split(tmp_path, monkeypatch):
    # CIFAR-10's splits, which tfds' mock does not give
    monkeypatch.setattr(tfds.core.DatasetInfo, "splits", property(lambda info: {"train": 0, "test": 0}))
    with tfds.testing.mock_data(num_examples=60):
        splits, _ = load_splits("cifar10", 6, data_dir=tmp_path, download=False, seed=0)
        whole, train, validation, _ = _held_out("cifar10", data_dir=tmp_path, download=False)
    labels = np.array(list(whole.values()))
    expected = sum(int(round(0.1 * n)) for n in np.bincount(labels))
    assert splits.validation_split == "holdout" and len(validation) == expected > 0
    assert not set(validation) & set(train) and {**validation, **train} == whole
    assert splits.info.num_examples == 60 - expected


@pytest.mark.slow
def test_the_run_records_its_validation_and_none_watches_the_training_metric(tmp_path):
    root = _folder(tmp_path / "photos", {"a": 10, "b": 10})
    result = runs.train("resnet8", root, run_dir=str(tmp_path / "run"), epochs=1, batch_size=4,
                        export=False, verbose=0, validation="none")
    with open(tmp_path / "run" / "run.json") as file:
        record = json.load(file)
    assert record["validation_split"] is None and record["config"]["data"]["validation"] == "none"
    assert record["validation"] == {"split": None}
    assert record["data"]["num_examples"] == 20 == result["data"]["num_examples"]  # the whole split
    rows = list(csv.DictReader(open(tmp_path / "run" / "history.csv")))
    assert float(rows[0]["top1"]) > 0 and rows[0]["val_top1"] == "NA"  # Keras' CSVLogger
    assert os.path.exists(tmp_path / "run" / "best.keras")  # chosen on the training top-1


def test_validation_none_does_not_go_with_a_multilabel_run(tmp_path):
    config = RunConfig.from_options("resnet8", "digit_canvases", epochs=1, export=False,
                                         validation="none", run_dir=str(tmp_path / "run"))
    with pytest.raises(InvalidArgument, match="multi-label run"):
        flow.train(config)


def test_the_tuner_validates_on_a_holdout_too(tmp_path):
    from keras_resnet.tuning import ResNetHyperModel, SearchSpace

    root = _folder(tmp_path / "photos", {"a": 10, "b": 10})
    space = SearchSpace(cifar_depths=(8,), batch_sizes=(4,))
    hypermodel = ResNetHyperModel(root, search_space=space, download=False)
    assert hypermodel.holdout == data.Holdout()
    assert hypermodel.info.num_examples == 18
    digits = ResNetHyperModel("digits", search_space=space, download=False)
    assert digits.holdout is None and digits.info.num_examples == 1293
