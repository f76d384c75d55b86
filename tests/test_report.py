"""A run's HTML report (keras_resnet.reports, ``keras-resnet report``): one page that stands
alone, read back with the standard library's HTML parser."""

import base64
import csv
import html.parser
import io
import json
import os
import shutil

import pytest
from PIL import Image

import keras_resnet
from keras_resnet import cli, reports
from keras_resnet.errors import InvalidArgument

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _Page(html.parser.HTMLParser):
    """Every start tag with its attributes, and every table (by class) as rows of cells, each
    cell ``(text, data-value)``."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.tags, self.tables, self.text = [], {}, []
        self._table, self._row, self._cell = None, None, None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("class", ""), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ["", attrs.get("data-value")]

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(tuple(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell[0] += data

    def pairs(self, css_class):
        """A field/value table as ``{field: exact value}`` (its data-value, read as JSON)."""
        return {row[0][0]: json.loads(row[1][1]) for row in self.tables[css_class][1:]}

    def images(self):
        return [attrs["src"] for tag, attrs in self.tags if tag == "img"]


def _read(path):
    with open(path) as f:
        return _Page(f.read())


@pytest.fixture(scope="module")
def run_copy(tiny_run, tmp_path_factory):
    """A copy of the session's tiny run (ResNet-8 on digits, exported; conftest.tiny_run), so
    the report and interpretation written into it leave the shared folder as it was."""
    run_dir = str(tmp_path_factory.mktemp("report") / "run")
    shutil.copytree(tiny_run[0], run_dir)
    with open(os.path.join(run_dir, "run.json")) as f:
        return run_dir, json.load(f)


@pytest.fixture(scope="module")
def page(run_copy):
    run_dir, _ = run_copy
    assert reports.report(run_dir) == os.path.join(run_dir, "report.html")
    return _read(os.path.join(run_dir, "report.html"))


def test_the_page_stands_alone(page, run_copy):
    run_dir, _ = run_copy
    for tag, attrs in page.tags:
        assert tag not in ("script", "link", "iframe", "object", "embed", "base")
        for name in ("src", "href"):
            assert not (attrs.get(name) or "").startswith(("http://", "https://", "//")), attrs
    assert "@import" not in "".join(page.text) and "@font-face" not in "".join(page.text)
    sources = page.images()
    assert sources and all(src.startswith("data:image/png;base64,") for src in sources)
    for src in sources:
        data = base64.b64decode(src.removeprefix("data:image/png;base64,"), validate=True)
        assert data.startswith(PNG_SIGNATURE)
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    with open(os.path.join(run_dir, "training_curves.png"), "rb") as f:
        assert base64.b64decode(sources[0].split(",", 1)[1]) == f.read()  # the curves, whole


def test_the_configuration_and_final_metrics_appear(page, run_copy):
    _, run = run_copy
    assert page.pairs("metrics test") == run["test"]  # top1, top5 and loss, exact
    top = page.pairs("config run")
    assert (top["model"], top["dataset"], top["epochs"]) == ("resnet8", "digits", 8)
    assert top["batch_size"] == 32
    assert top["learning_rate"] == run["learning_rate"]
    recipe = page.pairs("config recipe")
    assert recipe["name"] == run["recipe"]["name"] == "cifar"
    assert recipe["milestones"] == run["recipe"]["milestones"]
    assert page.pairs("config config")["recipe.epochs"] == 8
    last = page.pairs("metrics last-epoch")
    assert last["epoch"] == 8 and last["val_top1"] == run["history"][-1]["val_top1"]  # the text


def test_the_parity_table_is_the_exports_own(page, run_copy):
    _, run = run_copy
    table = page.tables["parity"]
    header = [text for text, _ in table[0]]
    rows = [{name: json.loads(value) for name, (_, value) in zip(header, row)} for row in table[1:]]
    assert rows == run["export"]["parity"] and len(rows) >= 1
    assert header[:2] == ["file", "runtime"]


def test_a_run_without_exports_or_interpretation_still_reports(run_copy, tmp_path):
    run_dir = str(tmp_path / "bare")
    shutil.copytree(run_copy[0], run_dir, ignore=shutil.ignore_patterns("export", "interpret",
                                                                         "report.html"))
    with open(os.path.join(run_dir, "run.json")) as f:
        run = json.load(f)
    run.pop("export")
    with open(os.path.join(run_dir, "run.json"), "w") as f:
        json.dump(run, f)
    os.remove(os.path.join(run_dir, "training_curves.png"))
    written = reports.report(run_dir, str(tmp_path / "elsewhere.html"))
    page = _read(written)
    text = "".join(page.text)
    assert text.count("Not available") == 2 and "parity" not in page.tables
    with Image.open(os.path.join(run_dir, "training_curves.png")) as image:  # drawn again
        assert image.size == (1300, 380)
    assert len(page.images()) == 1 and not os.path.exists(os.path.join(run_dir, "report.html"))


@pytest.mark.slow  # 2 s or more of its own
def test_interpret_writes_the_interpretation_first_and_shows_it(run_copy, capsys):
    run_dir, _ = run_copy
    assert cli.main(["report", run_dir, "--interpret"]) == 0
    assert capsys.readouterr().out.strip() == f"report: {os.path.join(run_dir, 'report.html')}"
    folder = os.path.join(run_dir, "interpret")
    page = _read(os.path.join(run_dir, "report.html"))
    assert len(page.images()) == 4  # the curves, both confusion matrices, the top losses
    for name in ("confusion_matrix.png", "confusion_matrix_normalized.png", "top_losses.png"):
        with open(os.path.join(folder, name), "rb") as f:
            assert f"data:image/png;base64,{base64.b64encode(f.read()).decode()}" in page.images()
    with open(os.path.join(folder, "per_class.csv"), newline="") as f:
        expected = list(csv.reader(f))
    table = page.tables["per_class"]
    assert [[text for text, _ in row] for row in table[:1]] == expected[:1]
    assert [[json.loads(value) for _, value in row] for row in table[1:]] == expected[1:]
    assert len(table) == 11  # the header and the ten digits


def test_every_text_is_escaped(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    hostile = '<script src="https://example.com/x.js"></script>&'
    (run_dir / "run.json").write_text(json.dumps({"model": hostile, "test": {hostile: 1.0}}))
    page = _read(keras_resnet.report(str(run_dir)))
    assert [tag for tag, _ in page.tags if tag == "script"] == []
    assert page.pairs("config run")["model"] == hostile and hostile in "".join(page.text)
    # no curves, no last epoch, no interpretation, no exports
    assert "".join(page.text).count("Not available") == 4


@pytest.mark.parametrize("make,message", [
    (lambda folder: str(folder / "missing"), "is not a folder"),
    (lambda folder: str(folder), "has no run.json"),
    (lambda folder: (folder / "run.json").write_text("{") and str(folder), "does not read as JSON"),
])
def test_a_bad_run_is_one_line_naming_the_argument(tmp_path, capsys, make, message):
    given = make(tmp_path)
    assert cli.main(["report", given]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("keras-resnet report: `RUN` ") and message in error
    assert "\n" not in error
    with pytest.raises(InvalidArgument, match=f"`run_dir` .*{message}"):
        keras_resnet.report(given)
