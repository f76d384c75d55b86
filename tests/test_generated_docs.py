"""The generated documentation pages (docs/gen_*.py): each script's --check passes on the
committed pages and names a page edited by hand; the pages hold what the package's tables say."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from keras_resnet.models import list_models
from keras_resnet.summary import PAPER_FIGURES
from keras_resnet.weights import sets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
# Script -> a page it writes.
SCRIPTS = {"gen_cli.py": "reference/cli.md", "gen_benchmarks.py": "benchmarks/index.md"}


def _run(script, *args):
    return subprocess.run([sys.executable, os.path.join(DOCS, script), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def _docs_module(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(DOCS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _copy_pages(tmp_path, *folders):
    for folder in folders:
        shutil.copytree(os.path.join(DOCS, folder), tmp_path / folder)
    return tmp_path


def _read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_check_passes_on_the_committed_pages(script):
    result = _run(script, "--check")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", sorted(SCRIPTS))
@pytest.mark.slow
def test_check_names_a_page_edited_by_hand_and_a_missing_one(script, tmp_path):
    page = SCRIPTS[script]
    _copy_pages(tmp_path, page.split("/")[0])
    edited = tmp_path / page
    edited.write_text(_read(edited).replace("\n## ", "\n## Edited ", 1), encoding="utf-8")
    result = _run(script, "--check", "--out", str(tmp_path))
    assert result.returncode == 1
    assert f"{os.path.join(str(tmp_path), page)}: stale: differs" in result.stderr
    assert f"run python docs/{script}" in result.stderr

    edited.unlink()
    result = _run(script, "--check", "--out", str(tmp_path))
    assert result.returncode == 1 and f"{page}: stale: missing" in result.stderr
    result = _run(script, "--out", str(tmp_path))  # without --check: writes the page again
    assert result.returncode == 0
    assert _read(edited) == _read(os.path.join(DOCS, page))


def test_the_cli_page_is_made_without_tensorflow():
    code = ("import sys; sys.path.insert(0, 'docs'); import gen_cli; text = gen_cli.render(); "
            "assert 'keras-resnet train' in text; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_cli_page_holds_every_command_of_build_parser(monkeypatch):
    from keras_resnet import cli

    monkeypatch.setenv("COLUMNS", "100")
    gen_cli = _docs_module("gen_cli")
    page = _read(os.path.join(DOCS, "reference", "cli.md"))
    listed = gen_cli.commands(cli.build_parser())
    assert {"summary", "train", "evaluate", "export", "predict", "tune", "serve",
            "weights"} <= {name for name, _, _ in listed}
    for name, _, sub in listed:
        assert f"\n## keras-resnet {name}\n\n```text\n{sub.format_help().rstrip()}\n```\n" in page
        assert f"[`{name}`](#keras-resnet-{name})" in page


def test_the_resnet_card_holds_resnet50s_count_and_torchvision_accuracy():
    page = _read(os.path.join(DOCS, "models", "resnet.md"))
    params = PAPER_FIGURES["resnet50"]["params"]
    assert params == 25_557_032
    row = next(line for line in page.splitlines() if line.startswith("| `resnet50` |"))
    assert "| 25,557,032 | 25,557,032 |" in row  # counted, and published
    torchvision = sets.get("resnet50", "torchvision_v1")
    assert torchvision.top1 == 76.13
    row = next(line for line in page.splitlines() if line.startswith("| `torchvision_v1` |")
               and "ResNet50_Weights" in line)
    assert "| 76.13 | 92.862 |" in row and torchvision.license in row
    assert torchvision.accuracy_note in row


def test_the_model_index_links_a_page_for_every_family_and_every_model():
    index = _read(os.path.join(DOCS, "models", "index.md"))
    links = re.findall(r"\]\(([a-z0-9_]+\.md)\)", index)
    assert len(links) == 8
    cards = ""
    for link in links:
        assert os.path.exists(os.path.join(DOCS, "models", link)), link
        cards += _read(os.path.join(DOCS, "models", link))
        assert "](index.md)" in _read(os.path.join(DOCS, "models", link))
    for name in list_models():
        assert f"`{name}`" in index and f"| `{name}` |" in cards, name
    for weight_set in sets.WEIGHT_SETS:
        assert f"`{weight_set.name}`" in cards


@pytest.mark.slow
def test_the_benchmarks_page_renders_results_files(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    runs = [{"row": "paper (§4.2)", "recipe": "paper", "overrides": {}, "seed": seed,
             "top1": top1, "seconds": 1.0} for seed, top1 in ((0, 0.9), (1, 0.8))]
    (results / "recipes.json").write_text(json.dumps(runs))
    machine = {"device": "cpu", "gpu_name": None, "keras": "3", "tensorflow": "2",
               "cpu": {"model": "a CPU", "family": None, "usable_cpus": 2, "physical_cores": 1}}
    (results / "input_pipeline.json").write_text(json.dumps({
        "machine": machine, "settings": {"batch": 8},
        "results": [{"model": "resnet20", "rate": 12.5}]}))
    result = _run("gen_benchmarks.py", "--results", str(results), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    page = _read(tmp_path / "benchmarks" / "index.md")
    assert "| paper (§4.2) | 2 | 0, 1 | 85.00% | 80.00-90.00% |" in page
    assert "| model | rate |" in page and "| resnet20 | 12.5 |" in page
    assert "`batch=8`" in page and "No results are committed" not in page
    assert "Measured on: device cpu | CPU a CPU, 2 usable CPUs (1 physical cores)" in page
    assert "![recipes.json](recipes.png)" in page
    plot = _read_bytes(tmp_path / "benchmarks" / "recipes.png")
    assert plot.startswith(b"\x89PNG") and b"Software" not in plot
    assert _run("gen_benchmarks.py", "--results", str(results), "--out",
                str(tmp_path)).returncode == 0
    assert _read_bytes(tmp_path / "benchmarks" / "recipes.png") == plot  # the same bytes again
    assert _run("gen_benchmarks.py", "--check", "--results", str(results), "--out",
                str(tmp_path)).returncode == 0


def test_the_benchmarks_page_says_how_to_measure_when_nothing_is_committed():
    page = _read(os.path.join(DOCS, "benchmarks", "index.md"))
    assert "`python -m benchmarks.recipes --json benchmarks/results/recipes.json`" in page
    assert "`benchmarks/results/train_throughput.json`" in page


def _stale_paths(stderr, docs_dir):
    """The paths under ``docs_dir`` that a --check's ``stderr`` names stale."""
    return sorted(os.path.relpath(line.split(": stale")[0], docs_dir)
                  for line in stderr.splitlines() if ": stale" in line)


@pytest.fixture
def model_cards(monkeypatch):
    """docs/gen_model_cards.py as a module (it imports docs/gen_cli.py as the script does)."""
    monkeypatch.setenv("KERAS_RESNET_QUIET", "1")
    monkeypatch.setattr(sys, "path", [DOCS, *sys.path])
    return _docs_module("gen_model_cards")


def _copy_cards(tmp_path):
    _copy_pages(tmp_path, "models")
    shutil.copy(os.path.join(DOCS, "model_statistics.json"), tmp_path)
    return tmp_path


@pytest.mark.slow
def test_model_cards_check_names_only_the_page_edited_and_a_stray_one(tmp_path):
    # The script in its own process (importing TensorFlow: 8 to 11 s on 2 busy cores; the
    # figures come from the committed statistics file, nothing is built): only the edited page
    # and the page nothing generates are stale, so every other card and the file are current.
    # The fast tier checks the same pages in-process (the next test's first --check).
    _copy_cards(tmp_path)
    edited = tmp_path / "models" / "resnet.md"
    edited.write_text(_read(edited).replace("25,557,032", "25,557,033", 1), encoding="utf-8")
    (tmp_path / "models" / "old.md").write_text("# Old\n", encoding="utf-8")
    result = _run("gen_model_cards.py", "--check", "--out", str(tmp_path))
    assert result.returncode == 1
    stale = _stale_paths(result.stderr, str(tmp_path))
    assert stale == [os.path.join("models", "old.md"), os.path.join("models", "resnet.md")], \
        result.stderr


def test_a_changed_fingerprint_makes_the_cards_build_and_check_name_the_statistics_file(
        model_cards, monkeypatch, tmp_path, capsys):
    _copy_cards(tmp_path)
    names = list_models()
    kept = model_cards.cached_statistics(os.path.join(DOCS, "model_statistics.json"), names)
    assert sorted(kept) == names
    asked = []

    def built(wanted):  # stands in for building: records the names, gives the kept figures
        asked.append(sorted(wanted))
        return {name: kept[name] for name in wanted}

    monkeypatch.setattr(model_cards, "statistics", built)
    assert model_cards.main(["--check", "--out", str(tmp_path)]) == 0  # the committed cards
    assert asked == []  # today's fingerprint: nothing built
    monkeypatch.setattr(model_cards, "fingerprint", lambda names, root=None: "0" * 64)
    assert model_cards.main(["--check", "--out", str(tmp_path)]) == 1
    assert asked == [names]  # every model, once
    err = capsys.readouterr().err
    assert _stale_paths(err, str(tmp_path)) == ["model_statistics.json"], err
    assert "model_statistics.json: stale: differs" in err
    assert "run python docs/gen_model_cards.py" in err

    assert model_cards.main(["--out", str(tmp_path)]) == 0  # rewrites the file
    written = json.loads(_read(tmp_path / "model_statistics.json"))
    committed = json.loads(_read(os.path.join(DOCS, "model_statistics.json")))
    assert written["fingerprint"] == "0" * 64 and written["models"] == committed["models"]
    assert model_cards.main(["--check", "--out", str(tmp_path)]) == 0
    assert len(asked) == 2  # the rewritten file's fingerprint is current: nothing built


def test_the_fingerprint_follows_each_listed_source_and_the_model_names(
        model_cards, monkeypatch, tmp_path):
    committed = json.loads(_read(os.path.join(DOCS, "model_statistics.json")))
    assert model_cards.fingerprint(list_models()) == committed["fingerprint"]
    folder = tmp_path / "blocks"
    folder.mkdir()
    (folder / "a.py").write_bytes(b"x = 1\n")
    monkeypatch.setattr(model_cards, "FINGERPRINTED", ("blocks",))

    def of(names=("resnet20",)):
        return model_cards.fingerprint(list(names), root=str(tmp_path))

    first = of()
    assert len(first) == 64 and of() == first
    (folder / "a.py").write_bytes(b"x = 1\r\n")  # line ends do not count
    (folder / "notes.txt").write_text("not a source")
    assert of() == first
    assert of(("resnet32", "resnet20")) == of(("resnet20", "resnet32")) != first
    (folder / "a.py").write_bytes(b"x = 2\n")
    second = of()
    assert second != first
    (folder / "b.py").write_bytes(b"")
    assert of() not in (first, second)
    monkeypatch.setattr(model_cards, "FINGERPRINTED", ("gone.py",))
    with pytest.raises(SystemExit, match="gone.py"):
        of()


def test_the_statistics_file_holds_resnet20s_figures_as_built(model_cards):
    from keras_resnet import summary

    kept = model_cards.cached_statistics(os.path.join(DOCS, "model_statistics.json"),
                                         list_models())
    built = summary.model_statistics("resnet20")
    assert kept["resnet20"] == built
    assert round(built["params"] / 1e6, 2) == 0.27  # Table 6: 0.27M
    assert built["input_shape"] == (32, 32, 3) and built["multiply_adds"] > 0
