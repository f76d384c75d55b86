"""The house's layout rules (../shared/DESIGN.md), read from the source with ``ast``.

- No import circle among keras_resnet's modules, inside packages too: the graph of every
  module's imports (at module level and inside functions; ``from keras_resnet.x import y``
  where ``y`` may be a submodule; relative imports; ``importlib.import_module("keras_resnet.x")``
  with a literal name) has no cycle.
- Imports point downwards: every top-level module has a level and imports only modules of lower
  levels (``cli -> runs, export, serving, tuning -> models, data, training -> blocks, ...``).
  A package's module may take a level of its own (``"data.pipeline"``); one without is checked
  by the circle test alone inside its package.
- No module uses another module's private (underscore) name: not in the package, its tests or
  its benchmarks, and nothing reaches into Keras' private API.
- Benchmarks are a package run with ``python -m benchmarks.X``: no ``sys.path`` edits.
- Functions stay short (60 lines of code) and modules too (450 lines): one concern each.
- The suite's schedule (tests/conftest.py) keeps the tests that share a fixture made once per
  worker on one worker.

Everything here reads source text; nothing imports keras_resnet or TensorFlow.
"""

import ast
import functools
import io
import pathlib
import tokenize

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = REPO / "keras_resnet"

# keras_resnet's top-level modules and packages, by level: each imports only lower levels.
# A package's module may be given a level of its own, below its package's when the package's
# __init__ imports it ("train": 9, "train.callbacks": 7 lets tuning, at 8, import the callbacks);
# the others inherit their package's, and imports among modules of one level-unit are checked
# by the circle test alone.
LEVELS = {
    "errors": 0,
    "extras": 1, "logs": 1, "interrupts": 1,
    "architectures": 2, "blocks": 2, "preprocessing": 2, "devices": 2, "optimizers": 2,
    "losses": 2, "metrics": 2, "boxes": 2, "coco_map": 2, "recipe_sources": 2,
    "detection_losses": 2.5, "detection_evaluation": 7.75,
    "saving": 3, "analysis": 3, "multilabel": 3, "recipes": 3, "tasks": 3,
    "curves": 3.5,
    "weights": 4,
    "builder": 5,
    "models": 6,
    "summary": 7, "features": 7, "data": 7, "distribute": 7,
    "heads": 7.5,
    # train/: its parts below evaluation and tuning, its set-up and flow above them
    "train.compile": 7, "train.schedules": 7, "train.backup": 7, "train.config": 7,
    "train.callbacks": 7.5, "train.ema": 7, "train.lr_range": 7, "train.replicas": 7,
    "train.precision": 7,
    "export": 8, "tuning": 8, "evaluation": 8, "train.setup": 8, "training": 8,
    "train.segmentation": 8,
    "train": 9, "serving": 9, "explain": 9,
    "interpret": 9.5,
    "runs": 10, "lr_find": 10, "reports": 10.25, "commands": 10.5,
    "cli": 11,
}

MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 450
# Over the limits today, each being split by concern: "file:function" (qualified, methods as
# "Class.method") or "file", relative to keras_resnet/, -> its length now. An entry that no
# longer breaks its limit fails test_known_long_is_current, so this list only shrinks.
KNOWN_LONG = {
    # functions: lines of code in the body
    # modules: lines
}
# Import circles being taken apart (their modules, as dotted names under keras_resnet): the
# circle test fails on any other, and on one of these that is gone.
KNOWN_CIRCLES = []


def _modules(folder):
    return sorted(p for p in folder.rglob("*.py") if ".venv" not in p.parts)


def _module_paths(root, name):
    """Dotted module name -> path, for every module of the package ``name`` at ``root``."""
    found = {}
    for path in _modules(root):
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join((name, *(parts[:-1] if parts[-1] == "__init__" else parts)))] = path
    return found


def _known(dotted, known):
    """The longest prefix of ``dotted`` that is one of the ``known`` modules, or None."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in known:
            return ".".join(parts[:end])
    return None


def _imports(tree, module, is_package, known):
    """(imported module, line) for every import in ``tree`` of one of the ``known`` modules:
    ``import a.b``, ``from a import b`` (``a.b`` when it is a module, else ``a``), relative
    imports, and ``importlib.import_module("a.b")`` with a literal name; at any depth."""
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: len(module.split(".")) - (not is_package)]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                     for alias in node.names]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"):
            names = [node.args[0].value]
        for name in names:
            target = _known(name, known)
            if target is not None and target != module:
                yield target, node.lineno


def _import_graph(root=PACKAGE, name="keras_resnet"):
    """module -> {imported module: (path, line of its first import)} over a package's modules."""
    paths = _module_paths(root, name)
    graph = {}
    for module, path in paths.items():
        edges = graph.setdefault(module, {})
        tree = ast.parse(path.read_text())
        for target, line in _imports(tree, module, path.name == "__init__.py", paths):
            edges.setdefault(target, (path, line))
    return graph


@functools.lru_cache(maxsize=1)
def _package_graph():
    """The package's import graph, read once for the tests that check it."""
    return _import_graph()


def _cycles(graph):
    """Each import circle of ``graph``: the modules of one strongly connected part (two or
    more modules that all reach each other) and one closed path through it, ``[a, b, a]``."""
    index, low, stack, on_stack, parts = {}, {}, [], set(), []

    def connect(node):  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            part, member = set(), None
            while member != node:
                member = stack.pop()
                on_stack.discard(member)
                part.add(member)
            if len(part) > 1:
                parts.append(part)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [(sorted(part), _closed_path(graph, part)) for part in parts]


def _closed_path(graph, part):
    """A shortest path from the part's first module back to itself, inside the part."""
    start = min(part)
    came_from, frontier = {start: None}, [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node]):
                if target == start:
                    chain = []
                    while node is not None:
                        chain.append(node)
                        node = came_from[node]
                    return chain[::-1] + [start]
                if target in part and target not in came_from:
                    came_from[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"no circle through {sorted(part)}")


def _describe(graph, members, cycle, root=REPO):
    steps = [f"{a} -> {b} ({graph[a][b][0].relative_to(root)}:{graph[a][b][1]})"
             for a, b in zip(cycle, cycle[1:])]
    return f"circle among {', '.join(members)}; one way round:\n    " + "\n    ".join(steps)


def test_no_import_circle_anywhere():
    graph = _package_graph()
    assert "keras_resnet.data.sources" in graph["keras_resnet.data"]  # it sees inside packages
    known = [{f"keras_resnet.{module}" for module in circle} for circle in KNOWN_CIRCLES]
    cycles = _cycles(graph)
    new = [_describe(graph, *cycle) for cycle in cycles if set(cycle[0]) not in known]
    gone = [sorted(circle) for circle in known if circle not in [set(cycle[0]) for cycle in cycles]]
    assert not new, "\n".join(new)
    assert not gone, f"no longer a circle: take these out of KNOWN_CIRCLES: {gone}"


def _level_unit(module, levels=None):
    """The entry of ``levels`` (LEVELS) that gives a module (``keras_resnet.a.b``) its level."""
    return _known(module.partition(".")[2], LEVELS if levels is None else levels) if "." in module else None


def _upward(graph, levels, root=REPO):
    """Each import of ``graph`` from a level-unit to one of the same or a higher level."""
    found = []
    for module, edges in sorted(graph.items()):
        unit = _level_unit(module, levels)
        if unit is None:
            continue  # the package's __init__ re-exports the public names
        for target, (path, line) in sorted(edges.items()):
            target_unit = _level_unit(target, levels)
            if target_unit not in (None, unit) and levels[target_unit] >= levels[unit]:
                found.append(f"{path.relative_to(root)}:{line}: {unit} (level {levels[unit]}) "
                             f"imports {target} (level {levels[target_unit]})")
    return found


def test_every_top_level_module_has_a_level():
    modules = {module.partition(".")[2] for module in _package_graph()} - {"", "__main__"}
    units = {module.split(".")[0] for module in modules}
    missing = units - set(LEVELS)
    stale = {entry for entry in LEVELS if entry not in modules}
    assert not missing and not stale, f"give these a level: {sorted(missing)}; no such module: {sorted(stale)}"


def test_imports_point_downwards():
    upward = _upward(_package_graph(), LEVELS)
    assert not upward, "\n".join(upward)


def _imported(node):
    """keras_resnet modules (dotted) and names an import node brings in."""
    if isinstance(node, ast.Import):
        return [(alias.name, None) for alias in node.names if alias.name.startswith("keras_resnet")]
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("keras_resnet"):
        return [(node.module, alias.name) for alias in node.names]
    return []


def _private_uses(path, root=REPO):
    tree = ast.parse(path.read_text())
    aliases, found = {}, []
    for node in ast.walk(tree):
        for module, name in _imported(node):
            if name and name.startswith("_") and not name.startswith("__"):
                found.append(f"{path.relative_to(root)}:{node.lineno} imports {module}.{name}")
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("keras_resnet"):
            for alias in node.names:
                aliases[alias.asname or alias.name] = node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = alias.name
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("keras.src"):
            found.append(f"{path.relative_to(root)}:{node.lineno} imports Keras' private {node.module}")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.value.id not in ("os", "sys")):
            found.append(f"{path.relative_to(root)}:{node.lineno} uses {node.value.id}.{node.attr}")
        if isinstance(node, ast.Attribute) and node.attr in ("_flatten_layers", "_layers", "_tracker"):
            found.append(f"{path.relative_to(root)}:{node.lineno} uses Keras' private .{node.attr}")
    return found


@pytest.mark.parametrize("folder", ["keras_resnet", "tests", "benchmarks"])
def test_no_private_name_of_another_module(folder):
    found = [use for path in _modules(REPO / folder) for use in _private_uses(path)]
    assert not found, "\n".join(found)


def test_benchmarks_are_a_package_without_path_edits():
    assert (REPO / "benchmarks" / "__init__.py").is_file()
    for path in _modules(REPO / "benchmarks"):
        source = path.read_text()
        assert "sys.path" not in source and "import common" not in source, path


_NOT_CODE = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
             tokenize.ENDMARKER, tokenize.ENCODING}


def _code_lines(source):
    """The numbers of the lines that hold code: not blank, not only a comment (a string that
    spans lines counts on each of them)."""
    lines = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in _NOT_CODE:
            lines.update(range(token.start[0], token.end[0] + 1))
    return lines


def _functions(node, prefix=""):
    """(qualified name, node) of every function and method under ``node``, nested ones
    included: ``"Class.method"``, ``"outer.inner"``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if not isinstance(child, ast.ClassDef):
                yield prefix + child.name, child
            yield from _functions(child, f"{prefix}{child.name}.")
        else:
            yield from _functions(child, prefix)


def _body_lines(function, code_lines):
    """A function's lines of code: its body's lines that are not blank and not only a comment,
    without its docstring (and without its signature and decorators)."""
    body = function.body
    if (isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        body = body[1:]
    if not body:
        return 0
    first = min([body[0].lineno] + [d.lineno for d in getattr(body[0], "decorator_list", [])])
    return sum(1 for line in code_lines if first <= line <= function.end_lineno)


def _lengths(root=PACKAGE):
    """"file:function" -> lines of code of its body, and "file" -> lines, over a package's
    functions and modules that break their limit."""
    too_long = {}
    for path in _modules(root):
        name, source = path.relative_to(root).as_posix(), path.read_text()
        if len(source.splitlines()) > MAX_MODULE_LINES:
            too_long[name] = len(source.splitlines())
        code_lines = _code_lines(source)
        for qualified, function in _functions(ast.parse(source)):
            lines = _body_lines(function, code_lines)
            if lines > MAX_FUNCTION_LINES:
                too_long[f"{name}:{qualified}"] = lines
    return too_long


def test_functions_and_modules_stay_short():
    """Every function or method has at most 60 lines of code in its body (lines that are not
    blank and not only a comment; the docstring, signature and decorators not counted), and
    every module at most 450 lines; KNOWN_LONG lists those still being split, at their length
    now: none may grow."""
    found = [f"{name}: {length} (limit {MAX_MODULE_LINES if ':' not in name else MAX_FUNCTION_LINES}"
             f"{', known at ' + str(KNOWN_LONG[name]) if name in KNOWN_LONG else ''})"
             for name, length in sorted(_lengths().items()) if length > KNOWN_LONG.get(name, 0)]
    assert not found, "split these by concern:\n" + "\n".join(found)


def test_known_long_is_current():
    """An entry of KNOWN_LONG that keeps its limit now is taken out of the list."""
    too_long = _lengths()
    kept = sorted(name for name in KNOWN_LONG if name not in too_long)
    assert not kept, f"these keep their limit now: take them out of KNOWN_LONG: {kept}"


def _write(folder, files):
    for name, source in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(source)


def test_the_checks_see_a_violation(tmp_path):
    """Each check finds what it looks for, in a package made for it."""
    sample = tmp_path / "sample.py"
    sample.write_text("from keras_resnet.data import sources\nfrom keras_resnet.export import _x\n"
                      "sources._digits()\nmodel._flatten_layers()\n")
    assert len(_private_uses(sample, tmp_path)) == 3

    # A circle through a submodule imported by name, an import inside a function, a relative
    # import and a literal importlib one; the downward imports around it are no circle.
    package = tmp_path / "pkg"
    _write(package, {
        "__init__.py": "",
        "low.py": "import os\n",
        "sub/__init__.py": "from pkg.sub import a\n",
        "sub/a.py": "from pkg import low\nfrom pkg.sub import b\n",
        "sub/b.py": "def f():\n    from . import c\n",
        "sub/c.py": "import importlib\nimportlib.import_module('pkg.sub.a')\n",
        "long.py": "def f():\n    '''Doc.\n\n    '''\n" + "    x = 1\n    # note\n\n" * 60
                   + "\n\nclass C:\n    def m(self):\n" + "        x = (\n            1)\n" * 31,
        "big.py": "x = 1\n" * (MAX_MODULE_LINES + 1),
    })
    graph = _import_graph(package, "pkg")
    assert graph["pkg.sub"] == {"pkg.sub.a": (package / "sub/__init__.py", 1)}
    assert set(graph["pkg.sub.a"]) == {"pkg.low", "pkg.sub.b"}
    members = ["pkg.sub.a", "pkg.sub.b", "pkg.sub.c"]
    assert _cycles(graph) == [(members, members + ["pkg.sub.a"])]
    assert "pkg.sub.b -> pkg.sub.c (pkg/sub/b.py:2)" in _describe(graph, *_cycles(graph)[0], tmp_path)
    assert _lengths(package) == {"long.py:C.m": 62, "big.py": MAX_MODULE_LINES + 1}
    _write(package, {"sub/c.py": "import os\n", "long.py": "def f():\n" + "    x = 1\n" * 60})
    assert _cycles(_import_graph(package, "pkg")) == [] and set(_lengths(package)) == {"big.py"}

    # An import of a higher level, at module level or in a function, inside a package too.
    levels = {"low": 0, "sub": 2, "sub.b": 1, "sub.c": 0}
    assert _upward(_import_graph(package, "pkg"), levels, tmp_path) == []
    _write(package, {"low.py": "def f():\n    import pkg.sub.b\n", "sub/b.py": "from pkg.sub import a\n"})
    assert _upward(_import_graph(package, "pkg"), levels, tmp_path) == [
        "pkg/low.py:2: low (level 0) imports pkg.sub.b (level 1)",
        "pkg/sub/b.py:1: sub.b (level 1) imports pkg.sub.a (level 2)"]


def test_tests_that_share_a_fixture_made_per_worker_share_a_worker(tmp_path):
    """The suite's schedule (tests/conftest.py): tests that share a fixture of scope module or
    session, directly or through other fixtures, are one unit of work; the others are free."""
    from conftest import unit_of

    harness = "tests/test_constructors.py::test_constructor_end_to_end[resnet20]"
    assert unit_of(harness, REPO) == "tests/test_constructors.py::prepared"
    assert unit_of("tests/test_cli.py::test_default_train_learns_digits", REPO) == "tests/test_cli.py::default_run"
    free = "tests/test_blocks.py::test_anything[1]"
    assert unit_of(free, REPO) == free
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n\n"
        "@pytest.fixture(scope='session')\ndef made(tmp_path_factory):\n    return 1\n\n"
        "@pytest.mark.slow\n@pytest.fixture(scope='module', params=[1, 2])\ndef read(made):\n    return made\n\n"
        "@pytest.fixture\ndef each(read):\n    return read\n\n"
        "@pytest.fixture(scope='module')\ndef other():\n    return 2\n\n"
        "def test_a(made):\n    pass\n\n@pytest.mark.parametrize('x', [1])\ndef test_b(each, x):\n    pass\n\n"
        "def test_c(other, tiny_run):\n    pass\n\ndef test_d(tmp_path, tiny_run):\n    pass\n")
    units = {name: unit_of(f"test_sample.py::test_{name}[1]", tmp_path) for name in "abcd"}
    assert units == {"a": "test_sample.py::made", "b": "test_sample.py::made",
                     "c": "test_sample.py::other", "d": "test_sample.py::test_d[1]"}
