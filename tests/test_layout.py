"""The house's layout rules (../shared/DESIGN.md), read from the source with ``ast``.

- Imports point downwards: every module has a level and imports only modules of lower levels
  (``cli -> runs, export, serving, tuning -> models, data, training -> blocks, ...``), so there
  is no import circle.
- No module uses another module's private (underscore) name: not in the package, its tests or
  its benchmarks, and nothing reaches into Keras' private API.
- Benchmarks are a package run with ``python -m benchmarks.X``: no ``sys.path`` edits.
- Modules stay short: one concern each.
"""

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = REPO / "keras_resnet"

# keras_resnet's top-level modules and packages, by level: each imports only lower levels.
LEVELS = {
    "errors": 0,
    "extras": 1, "logs": 1, "interrupts": 1,
    "architectures": 2, "blocks": 2, "preprocessing": 2, "devices": 2,
    "saving": 3, "analysis": 3, "multilabel": 3, "recipes": 3, "tasks": 3,
    "weights": 4,
    "builder": 5,
    "models": 6,
    "summary": 7, "features": 7, "data": 7, "training": 7, "distribute": 7,
    "export": 8, "tuning": 8, "evaluation": 8,
    "runs": 9, "serving": 9, "explain": 9,
    "cli": 10,
}
# Over about 500 lines because they read better whole: runs holds the train, fine-tune and
# evaluate flows around their one shared set-up; models the named constructors of the paper
# and the family; training the recipes and the callbacks that read them; blocks the two
# registered blocks, whose arguments carry the whole family (ResNeXt, SE, pre-activation,
# ResNet-D) rather than copies of them.
LONG_MODULES = {"runs.py": 600, "models.py": 600, "training.py": 600, "blocks.py": 600}


def _modules(folder):
    return sorted(p for p in folder.rglob("*.py") if ".venv" not in p.parts)


def _unit(path):
    """The top-level module or package of keras_resnet that ``path`` belongs to."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0] if parts[0] != "__init__" else None


def _imported(node):
    """keras_resnet modules (dotted) and names an import node brings in."""
    if isinstance(node, ast.Import):
        return [(alias.name, None) for alias in node.names if alias.name.startswith("keras_resnet")]
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("keras_resnet"):
        return [(node.module, alias.name) for alias in node.names]
    return []


def _target_unit(module, name):
    parts = module.split(".")[1:]
    if not parts and name:  # `from keras_resnet import data`
        parts = [name]
    return parts[0] if parts else None


def test_every_top_level_module_has_a_level():
    units = {_unit(p) for p in _modules(PACKAGE)} - {None, "__main__"}
    assert units == set(LEVELS), f"give these a level: {sorted(units ^ set(LEVELS))}"


def test_imports_point_downwards():
    upward = []
    for path in _modules(PACKAGE):
        unit = _unit(path)
        if unit is None:
            continue  # the package's __init__ re-exports the public names
        for node in ast.walk(ast.parse(path.read_text())):
            for module, name in _imported(node):
                target = _target_unit(module, name)
                if target is None or target == unit:
                    continue
                if target in LEVELS and LEVELS[target] >= LEVELS[unit]:
                    upward.append(f"{path.relative_to(REPO)}:{node.lineno} imports {target}")
    assert not upward, "\n".join(upward)


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


def test_modules_stay_short():
    too_long = []
    for path in _modules(PACKAGE):
        lines = len(path.read_text().splitlines())
        if lines > LONG_MODULES.get(path.name if path.parent == PACKAGE else "", 500):
            too_long.append(f"{path.relative_to(REPO)}: {lines} lines")
    assert not too_long, "\n".join(too_long)


def test_the_checks_see_a_violation(tmp_path):
    """The private-name check itself finds what it looks for."""
    sample = tmp_path / "sample.py"
    sample.write_text("from keras_resnet.data import sources\nfrom keras_resnet.export import _x\n"
                      "sources._digits()\nmodel._flatten_layers()\n")
    assert len(_private_uses(sample, tmp_path)) == 3
