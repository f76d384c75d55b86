import keras_resnet
from keras_resnet.summary import model_statistics


def test_summary_table_lists_models_next_to_the_paper():
    table = keras_resnet.summary_table(["resnet18", "resnet20"])
    lines = table.splitlines()
    assert lines[0].split() == ["model", "family", "depth", "input", "params", "paper", "mult-adds", "paper"]
    assert lines[1].split() == ["resnet18", "imagenet", "18", "224x224x3", "11,689,512", "11.69M", "1.81G", "1.80G"]
    assert lines[2].split()[:5] == ["resnet20", "cifar", "20", "32x32x3", "269,722"]


def test_model_statistics_counts_one_image():
    stats = model_statistics("resnet20")
    # 3x3 conv of 16 filters at 32x32 on 3 channels, 9 blocks, classifier: ~40.6M multiply-adds
    assert stats["multiply_adds"] == 40_551_040
    assert stats["depth"] == 20 and stats["paper_params"] == 0.27e6
