"""Prompt templates of zero-shot classifiers, and class-name files.

The package ships CLIP's ImageNet prompt ensemble as data
(`prompt_templates/`): `"imagenet_80"`, the 80 templates of CLIP's ImageNet
classifier, the default of `keras-tips classify` and `keras-tips evaluate`,
and `"imagenet_7"`, the 7 of them CLIP's authors found to work best
together. A template file has one template a line with `{}` for the class
name; blank lines and lines starting with `#` are skipped.
"""

import collections
import importlib.resources
import os

PROMPT_ENSEMBLES = ("imagenet_80", "imagenet_7")
DEFAULT_PROMPT_ENSEMBLE = "imagenet_80"


def _template_lines(text, origin):
    templates = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "{}" not in line:
            raise ValueError(
                f"{origin}, line {number}: the template {line!r} has no '{{}}' "
                "where the class name goes."
            )
        templates.append(line)
    if not templates:
        raise ValueError(f"{origin} holds no templates.")
    return templates


def load_templates(name_or_path=DEFAULT_PROMPT_ENSEMBLE):
    """The prompt templates of a shipped ensemble or of a template file.

    Args:
        name_or_path: `"imagenet_80"`, `"imagenet_7"`, or the path of a text
            file with one template a line (`{}` for the class name; blank
            lines and `#` comments skipped).

    Returns:
        A list of format strings.

    Example:
    ```python
    templates = load_templates()  # CLIP's 80 ImageNet templates
    classifier = build_zero_shot_classifier(model.encode_texts, names, templates)
    ```
    """
    if name_or_path in PROMPT_ENSEMBLES:
        resource = importlib.resources.files("keras_tips.evaluation").joinpath(
            "prompt_templates", f"{name_or_path}.txt"
        )
        return _template_lines(resource.read_text(encoding="utf-8"), name_or_path)
    if not os.path.isfile(name_or_path):
        raise FileNotFoundError(
            f"No template file {name_or_path!r}; pass a file with one template "
            f"a line, or one of the shipped ensembles {PROMPT_ENSEMBLES}."
        )
    with open(name_or_path, encoding="utf-8") as f:
        return _template_lines(f.read(), name_or_path)


def read_class_names(path, expected=None):
    """Class names from a text file, one a line (blank lines skipped).

    Args:
        path: str. The file.
        expected: optional int. The number of classes the data has; another
            count is refused.

    Returns:
        A list of str.

    Example:
    ```python
    names = read_class_names("imagenet_classes.txt", expected=1000)
    ```
    """
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise ValueError(f"{path} holds no class names.")
    if expected is not None and len(names) != expected:
        raise ValueError(
            f"{path} names {len(names)} classes; the data has {expected}. "
            "Give one name a line, in the order of the class ids."
        )
    duplicates = sorted(n for n, c in collections.Counter(names).items() if c > 1)
    if duplicates:
        raise ValueError(f"{path} names some classes twice: {duplicates[:5]}.")
    return names
