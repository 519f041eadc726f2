"""The version of keras_tips: its one source.

`pyproject.toml` reads it (`[tool.setuptools.dynamic]`, statically, without
importing the package); `keras_tips.__version__` and `keras-tips --version`
report it.
"""

__version__ = "0.1.0"
