"""Packaging: every third-party package the code imports is declared in
pyproject.toml, and there is one version."""

import ast
import importlib.metadata
import os
import re
import sys
import tomllib

import keras_tips

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "keras_tips")


def _project():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def _distribution_name(requirement):
    """`"keras-hub>=0.32,<0.33"` -> `"keras-hub"`, normalised (PEP 503)."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_modules():
    """Top-level modules imported anywhere in the package (also inside
    functions), with one file importing each."""
    modules = {}
    for directory, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module]
                else:
                    continue
                for module in names:
                    modules.setdefault(module.split(".")[0], path)
    return modules


def test_every_imported_package_is_declared():
    project = _project()
    declared = {_distribution_name(r) for r in project["dependencies"]}
    for requirements in project["optional-dependencies"].values():
        declared |= {_distribution_name(r) for r in requirements}
    distributions = importlib.metadata.packages_distributions()
    third_party = {
        module: path
        for module, path in _imported_modules().items()
        if module not in sys.stdlib_module_names and module != "keras_tips"
    }
    # The scan sees the package's real imports (a broken scan would pass).
    assert {"keras", "numpy", "PIL", "grain", "h5py", "absl"} <= set(third_party)
    undeclared = []
    for module, path in sorted(third_party.items()):
        names = {_distribution_name(d) for d in distributions.get(module, [])}
        if not names:
            undeclared.append(f"{module} ({path}): no installed distribution")
        elif not names & declared:
            undeclared.append(f"{module} ({path}): from {sorted(names)}")
    assert not undeclared, "imported but not declared in pyproject.toml: " + "; ".join(
        undeclared
    )


def test_one_version_source():
    from keras_tips.version import __version__

    assert _project()["dynamic"] == ["version"]
    assert keras_tips.__version__ == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+)?", __version__)
