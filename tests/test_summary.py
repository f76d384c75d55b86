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
    # Written out from §4.2: the stem, then per stage (32x32, 16x16, 8x8) six 3x3 convs, the
    # first of stages 2 and 3 widening the channels; option A shortcuts cost nothing; classifier.
    expected = (
        32 * 32 * 9 * 3 * 16
        + 6 * 32 * 32 * 9 * 16 * 16
        + 16 * 16 * 9 * 16 * 32 + 5 * 16 * 16 * 9 * 32 * 32
        + 8 * 8 * 9 * 32 * 64 + 5 * 8 * 8 * 9 * 64 * 64
        + 64 * 10
    )
    assert stats["multiply_adds"] == expected
    assert stats["depth"] == 20 and stats["paper_params"] == 0.27e6
