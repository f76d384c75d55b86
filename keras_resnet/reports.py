"""One HTML page about a training run: its final metrics, its curves, what it gets wrong, its
exports' parity and its configuration, read from the run directory ``train`` wrote.

The page stands alone: its figures are inlined as ``data:`` URIs, its style is inline CSS in
the system's fonts, it has no script and loads nothing, so it opens offline and travels as
one file. Every text from the run is HTML-escaped. A part the run folder lacks (no exports,
no interpretation) says "not available" and how to make it.

Example:
    >>> report("runs/resnet20-digits")  # doctest: +SKIP
    'runs/resnet20-digits/report.html'
"""

import base64
import csv
import html
import json
import os

from keras_resnet.curves import history_rows, plot_history
from keras_resnet.errors import InvalidArgument
from keras_resnet.saving import write_text

REPORT_FILE = "report.html"
CURVES_FILE = "training_curves.png"
# Where the report looks for `keras_resnet.interpret.interpret`'s files, in the run folder.
INTERPRET_DIR = "interpret"
INTERPRET_FIGURES = (("confusion_matrix.png", "Confusion matrix (rows true, columns predicted)"),
                     ("confusion_matrix_normalized.png", "Each true class's share per prediction"),
                     ("label_confusion.png", "Each label at its threshold (multi-label)"),
                     ("precision_recall.png", "Precision-recall per label (multi-label)"),
                     ("top_losses.png", "Largest losses: true / predicted / prob / loss"))
INTERPRET_TABLES = (("per_class.csv", "Per class"), ("most_confused.csv", "Most confused pairs"),
                    ("per_label.csv", "Per label"))
INTERPRET_WRITTEN = "top_losses.csv"  # the file interpret writes for every kind of classifier
# Sections of run.json shown apart from its top-level fields.
SECTIONS = ("test", "history", "export", "config", "recipe", "data")
LONG_LIST = 8  # a longer list (a per-pixel mean) is shown by its length
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ccc; margin-top: 1.8em; }
h3 { font-size: 1.05em; margin-bottom: 0.3em; } .note { color: #666; }
table { border-collapse: collapse; margin: 0.4em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
thead th { background: #f3f3f3; }
img { max-width: 100%; border: 1px solid #eee; } code { background: #f5f5f5; padding: 0 0.2em; }
"""


def _escape(value):
    return html.escape(str(value), quote=True)


def read_run(run_dir, argument="run_dir"):
    """The ``run.json`` of a run directory, checked.

    Args:
        run_dir: a folder ``keras-resnet train`` (``keras_resnet.runs.train``) wrote.
        argument: the name the error messages give it (the command line's ``RUN``).

    Returns:
        dict: run.json's contents.

    Example:
        >>> read_run("no/such/run")
        Traceback (most recent call last):
        ...
        keras_resnet.errors.InvalidArgument: `run_dir` 'no/such/run' is not a folder; ...
    """
    path = os.fspath(run_dir)
    if not os.path.isdir(path):
        raise InvalidArgument(f"`{argument}` {path!r} is not a folder; give the run directory "
                              "`keras-resnet train` wrote.")
    record = os.path.join(path, "run.json")
    if not os.path.isfile(record):
        raise InvalidArgument(f"`{argument}` {path!r} has no run.json: not a finished training "
                              "run (train writes run.json at its end).")
    try:
        with open(record) as f:
            run = json.load(f)
    except (OSError, ValueError) as error:
        raise InvalidArgument(f"`{argument}` {path!r}: its run.json does not read as JSON "
                              f"({error}).") from None
    if not isinstance(run, dict):
        raise InvalidArgument(f"`{argument}` {path!r}: its run.json holds no run record.")
    return run


def _text(value):
    """A value as the page shows it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        flat = all(not isinstance(item, (list, tuple, dict)) for item in value)
        if flat and len(value) <= LONG_LIST:
            return ", ".join(_text(item) for item in value) or "none"
        return f"({len(value)} values)"
    return str(value)


def _flatten(value, prefix=""):
    """``(dotted key, value)`` of every leaf of nested dicts; an empty dict is one "none"."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, None if isinstance(value, dict) else value


def _cell(value, text=None):
    """A cell showing ``value``, with its exact value as JSON in ``data-value``: the value, or
    ``text`` as a file holds it (a CSV cell)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if text is None and isinstance(value, (list, tuple)) and len(value) > LONG_LIST:
        text = _text(value)
    exact = json.dumps(value if text is None else text)
    return (f'<td{" class=number" if number else ""} data-value="{_escape(exact)}">'
            f"{_escape(_text(value))}</td>")


def _table(header, rows, css_class=""):
    head = "".join(f"<th>{_escape(name)}</th>" for name in header)
    body = "".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _pairs_table(pairs, css_class, cells=False):
    """A two-column table of ``(name, value)`` (``cells``: ``(name, cell made)``)."""
    rows = [[f"<th scope=row>{_escape(key)}</th>", value if cells else _cell(value)]
            for key, value in pairs]
    return _table(("field", "value"), rows, css_class) if rows else _missing("nothing recorded")


def _missing(why):
    return f'<p class="note">Not available: {_escape(why)}.</p>'


def _image(path, alt):
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    return f'<figure><img src="data:image/png;base64,{data}" alt="{_escape(alt)}">' \
           f"<figcaption>{_escape(alt)}</figcaption></figure>"


def _number(text):
    """A CSV cell as a number where it is one."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def _csv_table(path, css_class):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return _missing(f"{os.path.basename(path)} is empty")
    return _table(rows[0], [[_cell(_number(text), text) for text in row] for row in rows[1:]],
                  css_class)


def _metrics_section(run, run_dir):
    """The test figures run.json records and the last epoch's row of history.csv."""
    parts = ["<h2>Final metrics</h2>", "<h3>Test split</h3>"]
    test = run.get("test")
    parts.append(_pairs_table(_flatten(test), "metrics test") if isinstance(test, dict) and test
                 else _missing("run.json records no test figures"))
    rows = history_rows(os.path.join(run_dir, "history.csv"))
    parts.append("<h3>Last epoch</h3>")
    if rows:
        last = [(key, _cell(_number(text), text)) for key, text in rows[-1].items()
                if key != "epoch" and text not in ("", "NA")]
        epoch = ("epoch", _cell(int(rows[-1]["epoch"]) + 1))  # 1-based, as the curves count
        parts.append(_pairs_table([epoch] + last, "metrics last-epoch", cells=True))
    else:
        parts.append(_missing("no history.csv in the run folder"))
    return "\n".join(parts)


def _curves_section(run_dir):
    """training_curves.png, drawn again from history.csv when the folder lacks it."""
    path, history = os.path.join(run_dir, CURVES_FILE), os.path.join(run_dir, "history.csv")
    if not os.path.exists(path) and history_rows(history):
        plot_history(history, path)
    body = (_image(path, "Loss, metric and learning rate per epoch") if os.path.exists(path)
            else _missing("no history.csv or training_curves.png in the run folder"))
    return "<h2>Training curves</h2>\n" + body


def _interpretation_missing(run_dir):
    return not os.path.exists(os.path.join(run_dir, INTERPRET_DIR, INTERPRET_WRITTEN))


def _interpret_section(run_dir):
    folder = os.path.join(run_dir, INTERPRET_DIR)
    parts = ["<h2>Interpretation</h2>"]
    found = False
    for name, caption in INTERPRET_FIGURES:
        if os.path.exists(os.path.join(folder, name)):
            parts.append(_image(os.path.join(folder, name), caption))
            found = True
    for name, caption in INTERPRET_TABLES:
        if os.path.exists(os.path.join(folder, name)):
            parts += [f"<h3>{_escape(caption)}</h3>",
                      _csv_table(os.path.join(folder, name), name.removesuffix(".csv"))]
            found = True
    if not found:
        parts.append(_missing(f"no {INTERPRET_DIR}/ folder in the run (`keras-resnet report RUN "
                              "--interpret` writes it, for a classifier)"))
    return "\n".join(parts)


PARITY_COLUMNS = ("file", "runtime", "quantization", "precision", "max_abs_diff",
                  "top1_agreement", "pixel_agreement", "box_agreement", "images", "size_bytes",
                  "latency_ms")


def _exports_section(run):
    """The exported files and the parity of each against the Keras model, as run.json records
    the export step's result."""
    parts = ["<h2>Exports</h2>"]
    exported = run.get("export")
    if not isinstance(exported, dict):
        parts.append(_missing("the run exported nothing (trained with --no-export)"))
        return "\n".join(parts)
    files = [exported.get("saved_model")] + [path for fmt in ("tflite", "onnx", "openvino")
                                             for path in exported.get(fmt) or []]
    items = "".join(f"<li><code>{_escape(path)}</code></li>" for path in files if path)
    parts.append(f"<ul>{items}</ul>" if items else _missing("no exported file recorded"))
    rows = exported.get("parity") or []
    parts.append("<h3>Parity with the Keras model</h3>")
    if not rows:
        parts.append(_missing("no parity rows recorded"))
        return "\n".join(parts)
    columns = [c for c in PARITY_COLUMNS if any(c in row for row in rows)]
    columns += [c for row in rows for c in row if c not in columns]
    parts.append(_table(columns, [[_cell(row.get(c)) for c in columns] for row in rows], "parity"))
    return "\n".join(parts)


def _configuration_section(run):
    top = [(key, value) for key, value in run.items()
           if key not in SECTIONS and not isinstance(value, dict)]
    parts = ["<h2>Configuration</h2>", "<h3>Run</h3>", _pairs_table(top, "config run")]
    for key, title in (("config", "As asked (RunConfig)"), ("recipe", "Recipe"), ("data", "Data")):
        if isinstance(run.get(key), dict):
            parts += [f"<h3>{_escape(title)}</h3>",
                      _pairs_table(_flatten(run[key]), f"config {key}")]
    return "\n".join(parts)


# The test figure a run is ranked by, by task: (run.json's key, its name on the page).
HEADLINES = (("top1", "test top-1 accuracy"), ("mAP", "test mAP"), ("miou", "test mIoU"),
             ("map", "test COCO mAP"))


def _page(run, run_dir):
    name = os.path.basename(os.path.abspath(run_dir))
    summary = [f"{key} {_text(run[key])}" for key in ("model", "dataset", "task", "epochs")
               if key in run]
    test = run.get("test") if isinstance(run.get("test"), dict) else {}
    summary += [f"{title} {_text(test[key])}" for key, title in HEADLINES
                if isinstance(test.get(key), (int, float))][:1]
    summary = ", ".join(summary)
    sections = [_metrics_section(run, run_dir), _curves_section(run_dir),
                _interpret_section(run_dir), _exports_section(run), _configuration_section(run)]
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>Run report: {_escape(name)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"<h1>Run report: {_escape(name)}</h1>\n<p class=note>{_escape(summary)}<br>"
            f"<code>{_escape(os.path.abspath(run_dir))}</code></p>\n"
            + "\n".join(sections) + "\n</body>\n</html>\n")


def _interpret_run(run, run_dir, data_dir, download):
    """``keras_resnet.interpret.interpret`` of the run's model on its dataset's test split,
    into ``run_dir/interpret``."""
    from keras_resnet.interpret import interpret

    data = (run.get("config") or {}).get("data") or {}
    interpret(run_dir, data.get("dataset") or run.get("dataset"), "test",
              output_dir=os.path.join(run_dir, INTERPRET_DIR),
              data_dir=data_dir or data.get("data_dir"), download=download)


def report(run_dir, path=None, *, interpret=False, data_dir=None, download=True):
    """Write one self-contained HTML page about a training run.

    It holds the test figures run.json records and the last epoch's row of history.csv, the
    curves (``training_curves.png``, drawn again from history.csv when missing), the
    interpretation in ``run_dir/interpret/`` (the figures and tables
    ``keras_resnet.interpret.interpret`` writes, single-label or multi-label), the exports with
    their parity table (run.json's ``export``), and the configuration (run.json). Figures are
    inlined; the page loads nothing.

    Args:
        run_dir: the run directory ``keras-resnet train`` wrote.
        path: the HTML file written (default ``run_dir/report.html``), to a temporary name
            renamed into place.
        interpret: first write the interpretation of the run's test split into
            ``run_dir/interpret/`` when it has none (classifiers).
        data_dir, download: for ``interpret``, as ``keras_resnet.data.load`` takes them
            (default: the run's own ``data_dir``).

    Returns:
        the path written.

    Example:
        >>> report("runs/resnet20-digits", interpret=True)  # doctest: +SKIP
        'runs/resnet20-digits/report.html'
    """
    run = read_run(run_dir)
    run_dir = os.fspath(run_dir)
    if interpret and _interpretation_missing(run_dir):
        _interpret_run(run, run_dir, data_dir, download)
    path = os.path.join(run_dir, REPORT_FILE) if path is None else os.fspath(path)
    write_text(path, _page(run, run_dir))
    return path


__all__ = ["read_run", "report"]
