"""Write ``docs/benchmarks/index.md``: every benchmark script, the command that writes its
results, and the results committed under ``benchmarks/results/`` (none: the page says so and
shows no figure).

Reads the scripts' sources (their docstrings and ``--json`` defaults) without running or
importing them, and the JSON the scripts write: ``benchmarks.report.write_json``'s
``{"machine", "settings", "results", ...}`` and ``benchmarks.recipes``' list of runs
``{row, recipe, overrides, seed, top1, seconds}`` (a row's mean and min-max over its seeds).

Commands:

    python docs/gen_benchmarks.py                 # rewrite the page from the committed results
    python docs/gen_benchmarks.py --check         # exit 1, naming the page, if it is stale
    python docs/gen_benchmarks.py --results DIR   # from every *.json in DIR instead
"""

import ast
import glob
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gen_cli  # noqa: E402  (the generators' shared command line: write or --check)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
RESULTS = "benchmarks/results"
PAGE = "benchmarks/index.md"


def scripts():
    """``[(module, first docstring line, results file or None, json flag needed)]`` of every
    benchmark script (a module of ``benchmarks/`` with a ``main``), read from its source."""
    found = []
    for path in sorted(glob.glob(os.path.join(BENCHMARKS, "*.py"))):
        tree = ast.parse(open(path, encoding="utf-8").read())
        if not any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body):
            continue
        module = os.path.splitext(os.path.basename(path))[0]
        doc = (ast.get_docstring(tree) or "").split("\n\n")[0].replace("\n", " ")
        results, flag = None, False
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            texts = [a.value for a in node.args if isinstance(a, ast.Constant)]
            if name == "add_common_arguments" and len(texts) == 1:
                results = texts[0]  # benchmarks.report: --json defaults to RESULTS/<this>
            elif name == "add_argument" and "--json" in texts and results is None:
                results, flag = f"{module}.json", True  # --json PATH, no default
        found.append((module, doc, results, flag))
    return found


def committed_results():
    """``{file name: path}`` of the JSON files git tracks under ``benchmarks/results/``."""
    try:
        listed = subprocess.run(["git", "ls-files", "--", f"{RESULTS}/*.json"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        listed = []
    return {os.path.basename(path): os.path.join(ROOT, path) for path in sorted(listed)}


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.4g}"


def _cell(value):
    if isinstance(value, (dict, list)):
        value = json.dumps(value, sort_keys=True)
    return ("-" if value is None else _number(value)).replace("|", "&#124;")


def table(rows):
    """``rows`` (dicts) as a Markdown table of their keys, in order of first appearance."""
    keys = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    lines += ["| " + " | ".join(_cell(row.get(key)) for key in keys) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def recipes_table(runs):
    """``benchmarks.recipes``' runs: each row's test top-1 mean and min-max over its seeds."""
    lines = ["| recipe (ResNet-20, digits) | runs | seeds | test top-1, mean | min-max |",
             "| --- | ---: | --- | ---: | --- |"]
    for label in dict.fromkeys(run["row"] for run in runs):
        mine = [run for run in runs if run["row"] == label]
        top1 = [100 * run["top1"] for run in mine]
        seeds = ", ".join(str(run["seed"]) for run in mine)
        lines.append(f"| {_cell(label)} | {len(mine)} | {seeds} | {sum(top1) / len(top1):.2f}% "
                     f"| {min(top1):.2f}-{max(top1):.2f}% |")
    return "\n".join(lines) + "\n"


def is_recipes(data):
    """Whether ``data`` is ``benchmarks.recipes``' list of runs."""
    return isinstance(data, list) and bool(data) and all(
        isinstance(run, dict) and "row" in run and "top1" in run for run in data)


def recipes_plot(runs):
    """PNG bytes: each row's test top-1 mean, with its min-max, as horizontal bars (fixed size,
    dpi and no date or software in the file, so the same runs give the same bytes)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(run["row"] for run in runs))
    top1 = [[100 * run["top1"] for run in runs if run["row"] == label] for label in labels]
    means = [sum(values) / len(values) for values in top1]
    spread = [[m - min(v) for m, v in zip(means, top1)], [max(v) - m for m, v in zip(means, top1)]]
    figure, axes = plt.subplots(figsize=(8, 0.4 * len(labels) + 1.2), dpi=100)
    axes.barh(range(len(labels)), means, xerr=spread, color="#4c72b0", capsize=3)
    axes.set_yticks(range(len(labels)), labels)
    axes.invert_yaxis()
    axes.set_xlabel("test top-1 (%), mean and min-max over seeds")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def render_result(name, data):
    """One results file as Markdown (tables of what it holds; nothing computed but means)."""
    parts = [f"### {name}\n"]
    if is_recipes(data):
        plot = os.path.splitext(name)[0] + ".png"
        return "\n".join(parts + [recipes_table(data), f"![{name}]({plot})\n"])
    if isinstance(data, dict) and "results" in data:
        from benchmarks import hardware

        parts.append(f"Measured on: {hardware.describe(data.get('machine') or {})}.\n")
        settings = data.get("settings") or {}
        parts.append("Settings: " + ", ".join(f"`{k}={_cell(v)}`" for k, v in settings.items())
                     + ".\n" if settings else "")
        data = {"results": data["results"],
                **{k: v for k, v in data.items() if k not in ("machine", "settings", "results")}}
    parts += _sections(data)
    return "\n".join(part for part in parts if part)


def _sections(data):
    if isinstance(data, list) and data and all(isinstance(row, dict) for row in data):
        return [table(data)]
    if isinstance(data, dict):
        parts = []
        for key, value in data.items():
            if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
                parts += [f"`{key}`:\n", table(value)]
            else:
                parts.append(f"`{key}`: `{_cell(value)}`\n")
        return parts
    return ["```json\n" + json.dumps(data, indent=1, sort_keys=True) + "\n```\n"]


def render(results):
    """The page's Markdown from ``results`` (``{file name: path}``)."""
    lines = ["| script | what it measures | results file | command |", "| --- | --- | --- | --- |"]
    for module, doc, out, flag in scripts():
        command = f"python -m benchmarks.{module}" + (f" --json {RESULTS}/{out}" if flag else "")
        lines.append(f"| `benchmarks/{module}.py` | {_cell(doc)} | "
                     + (f"`{RESULTS}/{out}`" if out else "none (prints its table)")
                     + f" | `{command}` |")
    parts = [
        "# Benchmarks\n",
        "<!-- Generated by docs/gen_benchmarks.py from benchmarks/ and its committed results; "
        "do not edit by hand. -->\n",
        "Each script prints its figures; those in the table below also write them as JSON to "
        f"`{RESULTS}/`. This page shows the results files committed there (the folder is in "
        "`.gitignore`: commit one with `git add -f`); `python docs/gen_benchmarks.py` rewrites "
        "it.\n",
        "\n".join(lines) + "\n",
        "## Results\n",
    ]
    if not results:
        parts.append(f"No results are committed under `{RESULTS}/`: run a command above to "
                     "measure them on your machine.\n")
    for name, path in sorted(results.items()):
        with open(path, encoding="utf-8") as f:
            parts.append(render_result(name, json.load(f)))
    return "\n".join(parts)


def pages(args=None):
    """``{path under docs/: Markdown}``: the benchmarks page."""
    folder = getattr(args, "results", None)
    found = ({os.path.basename(p): p for p in sorted(glob.glob(os.path.join(folder, "*.json")))}
             if folder else committed_results())
    generated = {PAGE: render(found)}
    for name, path in found.items():  # the plots: written, never compared by --check
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if is_recipes(data):
            generated[f"benchmarks/{os.path.splitext(name)[0]}.png"] = recipes_plot(data)
    return generated


def main(argv=None):
    return gen_cli.run(argv, pages, "docs/gen_benchmarks.py", __doc__.splitlines()[0],
                       options=[("--results", {"default": None, "metavar": "DIR",
                                               "help": "render every *.json in DIR (default: "
                                                       f"the files git tracks in {RESULTS}/)"})])


if __name__ == "__main__":
    sys.exit(main())
