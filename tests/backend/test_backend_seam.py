"""Backend-specific code lives in `keras_tips/backend/` only.

Outside it, no module of the package imports jax, torch or tensorflow (or
a backend's kernel module, which would import them) or branches on the
Keras backend, except the tokenizer (tensorflow-text) and
the multi-host start-up in `training/distribution.py`. The rule is checked on
the syntax tree of every module (imports, `importlib.import_module` and
`__import__` of a literal name, any reference to `keras.backend.backend` or
`keras.config.backend` under whatever name it was imported), so comments,
strings and aliases neither hide a breach nor raise a false one.
"""

import ast
import os

import pytest

import keras_tips
from keras_tips import backend

PACKAGE_DIR = os.path.dirname(os.path.abspath(keras_tips.__file__))
ALLOWED = (
    "backend/",
    "models/tips_tokenizer.py",
    "training/distribution.py",
)
FRAMEWORKS = {"jax", "jaxlib", "torch", "tensorflow", "tensorflow_text"}
# Imported only through the dispatch of `keras_tips.backend`.
KERNEL_MODULES = {"jax_kernels", "tensorflow_kernels", "torch_kernels"}
# Functions that name the running backend: `keras.backend.backend()` and
# its aliases.
BACKEND_QUERIES = {
    ("keras", "backend", "backend"),
    ("keras", "config", "backend"),
    ("keras", "src", "backend", "backend"),
    ("keras", "src", "backend", "config", "backend"),
}


def _imported_names(tree):
    """Local name -> dotted path, for every import of the module."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    names[top] = top
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _dotted(node, names):
    """The dotted path a Name / Attribute chain refers to, or None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in names:
        return None
    return tuple(names[node.id].split(".")) + tuple(reversed(parts))


def breaches(source, filename="<module>"):
    """(line, what) for every framework import or backend query in
    `source`."""
    tree = ast.parse(source, filename)
    names = _imported_names(tree)
    found = []
    for node in ast.walk(tree):
        modules = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules = [node.module]
            if node.module == "keras_tips.backend":
                modules += [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Call) and node.args:
            function = node.func
            function_name = getattr(function, "attr", getattr(function, "id", None))
            argument = node.args[0]
            if (
                function_name in ("import_module", "__import__")
                and isinstance(argument, ast.Constant)
                and isinstance(argument.value, str)
            ):
                modules = [argument.value]
        for module in modules:
            parts = module.split(".")
            if parts[0] in FRAMEWORKS or (
                parts[:2] == ["keras_tips", "backend"]
                and len(parts) > 2
                and parts[2] in KERNEL_MODULES
            ):
                found.append((node.lineno, f"imports {module}"))
        if isinstance(node, (ast.Attribute, ast.Name)) and isinstance(
            node.ctx, ast.Load
        ):
            path = _dotted(node, names)
            if path in BACKEND_QUERIES:
                found.append((node.lineno, "queries " + ".".join(path)))
    return found


def _package_modules():
    for root, _, files in os.walk(PACKAGE_DIR):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(root, name)
                yield os.path.relpath(path, PACKAGE_DIR).replace(os.sep, "/"), path


def test_backend_code_only_in_the_backend_package():
    scanned = []
    found = []
    for relative, path in _package_modules():
        if relative.startswith(ALLOWED):
            continue
        scanned.append(relative)
        with open(path, encoding="utf-8") as f:
            for line, what in breaches(f.read(), path):
                found.append(f"keras_tips/{relative}:{line}: {what}")
    # The walk really covers the package, the layers included.
    assert len(scanned) > 50, scanned
    assert {"layers/attention.py", "models/tips_model.py"} <= set(scanned)
    assert not found, (
        "Backend-specific code outside keras_tips/backend/ (move it into a "
        "kernel module there):\n" + "\n".join(found)
    )


def test_the_exempt_modules_exist():
    relatives = {relative for relative, _ in _package_modules()}
    for allowed in ALLOWED:
        assert any(r.startswith(allowed) for r in relatives), allowed


@pytest.mark.parametrize(
    "source",
    [
        "import torch",
        "import jax.numpy as jnp",
        "from jax import numpy",
        "from tensorflow.python.ops import control_flow_util",
        "import tensorflow_text",
        "import importlib\nimportlib.import_module('torch.nn')",
        "tf = __import__('tensorflow')",
        "def f():\n    import tensorflow as tf\n    return tf",
        "import keras\nif keras.backend.backend() == 'jax':\n    pass",
        "import keras\nname = keras.config.backend()",
        "from keras import backend as K\nK.backend()",
        "from keras import config\nconfig.backend()",
        "from keras.config import backend\nbackend()",
        "from keras.src import backend\nbackend.backend()",
        "import keras\nquery = keras.backend.backend",
        "from keras_tips.backend import torch_kernels",
        "import keras_tips.backend.jax_kernels",
    ],
)
def test_the_scan_finds_each_breach(source):
    assert len(breaches(source)) == 1, breaches(source)


@pytest.mark.parametrize(
    "source",
    [
        "from keras_tips import backend\nbackend.dense(layer, x)",
        "from keras_tips import backend\nbackend.fast_kernels_enabled()",
        "import keras\nkeras.backend.standardize_dtype('float32')",
        "# import torch\nx = 'keras.backend.backend()'",
        "from keras_tips.backend import torch_kernels_docs",
        "from . import torch",
    ],
)
def test_the_scan_leaves_allowed_code_alone(source):
    assert breaches(source) == []


def test_fast_kernels_is_a_scoped_setting():
    assert backend.fast_kernels_enabled()
    with backend.fast_kernels(False):
        assert not backend.fast_kernels_enabled()
        with backend.fast_kernels(True):
            assert backend.fast_kernels_enabled()
        assert not backend.fast_kernels_enabled()
    assert backend.fast_kernels_enabled()
    with pytest.raises(RuntimeError):
        with backend.fast_kernels(False):
            raise RuntimeError("inside")
    assert backend.fast_kernels_enabled()


def test_fast_kernels_refuses_a_non_bool():
    with pytest.raises(ValueError, match="True or False"):
        with backend.fast_kernels("off"):
            pass


@pytest.mark.parametrize(
    "module", ["keras_kernels", "jax_kernels", "tensorflow_kernels", "torch_kernels"]
)
def test_every_kernel_module_defines_the_dispatch_interface(module):
    path = os.path.join(PACKAGE_DIR, "backend", f"{module}.py")
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    defined = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom):
            defined.update(alias.asname or alias.name for alias in node.names)
    assert set(backend.KERNEL_FUNCTIONS) <= defined, sorted(
        set(backend.KERNEL_FUNCTIONS) - defined
    )
