"""The modules of keras_tips import each other without cycles.

Read statically (`ast`, nothing is imported), so an import inside a function
counts as much as one at the top of a module: a cycle hidden in a function
still ties the modules together and breaks as soon as the import is moved.

An import of `keras_tips.a.b` also runs `keras_tips/a/__init__.py` first, so
it depends on that package too, unless the importing module is itself inside
`keras_tips.a` (then the package has already begun to run, and Python only
loads the sibling). Package `__init__`s re-export their own modules; that
is not a cycle by this rule, while a module outside the package that reaches
back into it through a re-export is.
"""

import ast
import importlib.util
import os

# Found without importing it (and Keras with it): the test only reads files.
PACKAGE_DIR = importlib.util.find_spec("keras_tips").submodule_search_locations[0]


def module_files(package_dir=PACKAGE_DIR, package="keras_tips"):
    """Dotted name -> file of every module of the package."""
    files = {}
    for directory, _, names in os.walk(package_dir):
        for name in names:
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            parts = os.path.relpath(path, package_dir)[: -len(".py")].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join([package] + parts)] = path
    return files


def _imported_names(module, path):
    """Dotted names each import statement of a module may refer to."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    is_package = os.path.basename(path) == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                if not is_package:
                    parts = parts[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                yield base, alias.name


def import_graph(files):
    """Module -> the package modules it needs to import (see the docstring)."""
    graph = {}
    for module, path in files.items():
        targets = set()
        for base, name in _imported_names(module, path):
            if name is not None and f"{base}.{name}" in files:
                targets.add(f"{base}.{name}")  # `from package import module`
            elif base in files:
                targets.add(base)
        for target in list(targets):
            parts = target.split(".")
            for end in range(1, len(parts)):
                package = ".".join(parts[:end])
                inside = module == package or module.startswith(package + ".")
                if package in files and not inside:
                    targets.add(package)
        targets.discard(module)
        graph[module] = targets
    return graph


def find_cycles(graph):
    """Cycles of the graph: for each module on one, a shortest way back to
    it, unless an earlier cycle already went through it."""
    cycles, done = [], set()
    for start in sorted(graph):
        if start in done:
            continue
        # Breadth-first from `start`: the shortest way back to it, if any.
        parents, frontier, cycle = {start: None}, [start], None
        while frontier and cycle is None:
            following = []
            for module in frontier:
                for target in sorted(graph[module]):
                    if target == start:
                        cycle = [module]
                        while parents[cycle[-1]] is not None:
                            cycle.append(parents[cycle[-1]])
                        cycle = cycle[::-1] + [start]
                        break
                    if target not in parents:
                        parents[target] = module
                        following.append(target)
                if cycle:
                    break
            frontier = following
        if cycle:
            cycles.append(cycle)
            done.update(cycle)
    return cycles


def test_finds_a_cycle_through_a_package_init_and_a_function_import(tmp_path):
    package = tmp_path / "pkg"
    (package / "models").mkdir(parents=True)
    (package / "conversion").mkdir()
    (package / "__init__.py").write_text("")
    (package / "models" / "__init__.py").write_text(
        "from pkg.models.model import Model\n"
    )
    (package / "models" / "encoder.py").write_text("")
    (package / "models" / "model.py").write_text(
        "import pkg.models.encoder\n\n"
        "def load():\n    from pkg.conversion import convert\n"
    )
    (package / "conversion" / "__init__.py").write_text("")
    (package / "conversion" / "convert.py").write_text(
        "from pkg.models.encoder import *\n"
    )
    (package / "cli.py").write_text("from . import conversion\n")
    graph = import_graph(module_files(str(package), "pkg"))
    assert find_cycles(graph) == [
        [
            "pkg.conversion.convert",
            "pkg.models",
            "pkg.models.model",
            "pkg.conversion.convert",
        ]
    ]
    # A package that re-exports its own modules is no cycle: its modules do
    # not depend on it.
    assert graph["pkg.models.model"] == {
        "pkg.models.encoder", "pkg.conversion", "pkg.conversion.convert"
    }
    assert graph["pkg.cli"] == {"pkg.conversion"}


def test_keras_tips_has_no_import_cycles():
    files = module_files()
    assert "keras_tips.models.tips_model" in files
    cycles = find_cycles(import_graph(files))
    assert not cycles, "Import cycles:\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles
    )
