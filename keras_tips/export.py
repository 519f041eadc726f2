"""Exporting one tower of a TIPS model for serving, through Keras' `export`.

A tower is wrapped in a functional model over its raw inputs and outputs
(no preprocessing: images in [0, 1] at the exported size, text as token ids
and padding flags from `TIPSTokenizer`) and handed to `keras.Model.export`:

| tower    | inputs                                   | outputs                          |
|----------|------------------------------------------|----------------------------------|
| `vision` | `images` float32 (B, H, W, 3)            | `cls_1`, `cls_2` (B, D), `patches` (B, N, D) |
| `text`   | `token_ids` int32, `padding_mask` bool (B, T) | `text_embeddings` (B, D)    |

Which Keras backend exports which format, and with which sizes, is
`EXPORT_FORMATS` (found by exporting and serving the towers with Keras 3.15,
TensorFlow 2.21, PyTorch 2.13 and JAX 0.10; `tests/test_export.py` reloads
each format and compares its outputs):

* `saved_model` on TensorFlow: batch and image size dynamic (any multiple of
  the patch size). On JAX the image tower's size check fails on symbolic
  sizes, and at a fixed size the SavedModel does not serve under TensorFlow
  2.21 (`vhlo.composite_v2` is unknown to its XLA); on PyTorch Keras' export
  fails on the towers' inputs.
* `litert` on TensorFlow: a fixed image size (the converter has no op for
  the antialiased resize of the position embedding at run-time sizes),
  dynamic batch. On PyTorch it needs `litert-torch`.
* `onnx` on PyTorch: fixed batch and image size (Keras' exporter for
  dynamic sizes traces the towers with a 1-pixel image and fails). On
  TensorFlow the image tower's exact GELU becomes `Erfc`, not an ONNX op.

The running backend is checked against this table by
`keras_tips.backend.require_backend`; the exporting itself is Keras'.
"""

import os
import shutil
import typing

import keras

from keras_tips.atomic_files import check_output_dir
from keras_tips.backend import require_backend



class ExportFormat(typing.NamedTuple):
    """How one format exports: Keras' name for it, the backend that exports
    it, the file suffix ("" for a directory), and whether the image size
    and the batch size stay dynamic."""

    keras_format: str
    backend: str
    suffix: str
    dynamic_image_size: bool
    dynamic_batch: bool


EXPORT_FORMATS = {
    "saved_model": ExportFormat("tf_saved_model", "tensorflow", "", True, True),
    "litert": ExportFormat("litert", "tensorflow", ".tflite", False, True),
    "onnx": ExportFormat("onnx", "torch", ".onnx", False, False),
}
TOWERS = ("vision", "text")
VISION_OUTPUTS = ("cls_1", "cls_2", "patches")
TEXT_OUTPUTS = ("text_embeddings",)


def _image_size(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, int):
        return (image_size, image_size)
    return tuple(int(side) for side in image_size)


def tower_model(backbone, tower, image_size=None, sequence_length=None):
    """One tower of a `TIPSBackbone` as a functional Keras model.

    Args:
        backbone: a `TIPSBackbone`.
        tower: `"vision"` or `"text"`.
        image_size: for `"vision"`: int, (height, width), or None for any
            size (multiples of the patch size).
        sequence_length: for `"text"`: int (the tokenizer's length).

    Returns:
        A `keras.Model` with named inputs and outputs (see the module
        docstring).

    Example:
    ```python
    vision = tower_model(model.backbone, "vision", image_size=448)
    features = vision(images)  # {"cls_1", "cls_2", "patches"}
    ```
    """
    if tower == "vision":
        height, width = _image_size(image_size) or (None, None)
        patch = backbone.vision_encoder.patch_size
        for side in (height, width):
            if side is not None and (side <= 0 or side % patch):
                raise ValueError(
                    f"The image size {image_size!r} is not a positive multiple of "
                    f"the patch size {patch}: export at e.g. "
                    f"{max(1, round(side / patch)) * patch}."
                )
        images = keras.Input((height, width, 3), name="images")
        outputs = backbone.vision_encoder(images)
        outputs = {key: outputs[key] for key in VISION_OUTPUTS}
        return keras.Model(images, outputs, name="tips_vision")
    if tower == "text":
        if sequence_length is None:
            raise ValueError("Exporting the text tower needs the sequence_length.")
        token_ids = keras.Input((sequence_length,), dtype="int32", name="token_ids")
        padding_mask = keras.Input((sequence_length,), dtype="bool", name="padding_mask")
        embeddings = backbone.text_encoder(token_ids, padding_mask)
        return keras.Model(
            {"token_ids": token_ids, "padding_mask": padding_mask},
            {"text_embeddings": embeddings},
            name="tips_text",
        )
    raise ValueError(f"Unknown tower {tower!r}; expected one of {TOWERS}.")


def _input_signature(model, batch_size):
    """Keras `InputSpec`s of `model`'s inputs (their structure and names),
    the batch set to `batch_size` (None: dynamic)."""

    def spec(tensor):
        shape = (batch_size, *tensor.shape[1:])
        return keras.InputSpec(shape=shape, dtype=tensor.dtype, name=tensor.name)

    return [keras.tree.map_structure(spec, model.input)]


def _check_onnx_packages():
    """Keras exports ONNX from PyTorch with `torch.onnx`'s dynamo exporter
    (`onnxscript`) and falls back, silently, to the TorchScript exporter,
    which fails on the towers: say what to install instead."""
    import importlib.util

    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"Exporting ONNX needs {' and '.join(missing)}: "
            "`pip install 'keras-tips[export]'` (or `pip install onnx onnxscript`)."
        )


def _name_onnx_outputs(path, names):
    """Gives the outputs of an ONNX file the towers' output names (PyTorch's
    exporter names them after the graph's last ops). `names` are in the
    order Keras flattens the output dict: sorted."""
    import onnx

    graph_model = onnx.load(path)
    graph = graph_model.graph
    if len(graph.output) != len(names):
        raise RuntimeError(
            f"The exported ONNX graph has {len(graph.output)} outputs, "
            f"expected {len(names)} ({', '.join(names)})."
        )
    renames = {output.name: name for output, name in zip(graph.output, names)}
    for node in graph.node:
        node.output[:] = [renames.get(name, name) for name in node.output]
        node.input[:] = [renames.get(name, name) for name in node.input]
    for output in graph.output:
        output.name = renames[output.name]
    onnx.save(graph_model, path)


def export_tower(
    model,
    tower,
    export_format,
    output,
    image_size=None,
    batch_size=None,
    overwrite=False,
):
    """Exports one tower of a `TIPSModel` for serving.

    Args:
        model: a `TIPSModel` (its preprocessor gives the default image size
            and the text length).
        tower: `"vision"` or `"text"`.
        export_format: `"saved_model"`, `"litert"` or `"onnx"`; each exports
            on one Keras backend (`EXPORT_FORMATS`).
        output: path to write: a directory for `saved_model`, a `.tflite` or
            `.onnx` file otherwise.
        image_size: int or (height, width). The vision tower's input size;
            default: dynamic where the format allows it (`saved_model`),
            otherwise the preprocessor's size.
        batch_size: int. Fixes the batch size; default dynamic where the
            format allows it, otherwise 1.
        overwrite: bool. Replace an existing `output`.

    Returns:
        str, the absolute path written.

    Raises:
        ValueError: an unknown tower or format, a format the running backend
            does not export, or a size the format cannot keep dynamic.

    Example:
    ```python
    # KERAS_BACKEND=tensorflow
    model = keras_tips.TIPSModel.from_preset("tips_v2_oss_b14")
    export_tower(model, "vision", "saved_model", "tips_vision")
    served = tf.saved_model.load("tips_vision").serve(images)  # cls_1, ...
    ```
    """
    if export_format not in EXPORT_FORMATS:
        raise ValueError(
            f"Unknown export format {export_format!r}; expected one of "
            f"{sorted(EXPORT_FORMATS)}."
        )
    if tower not in TOWERS:
        raise ValueError(f"Unknown tower {tower!r}; expected one of {TOWERS}.")
    entry = EXPORT_FORMATS[export_format]
    suffix = entry.suffix
    output = check_output_dir(output, overwrite)
    if suffix and not output.endswith(suffix):
        raise ValueError(
            f"The {export_format!r} format writes one file: name it *{suffix} "
            f"(received {output!r})."
        )
    if batch_size is not None and batch_size <= 0:
        raise ValueError(f"batch_size must be positive; received {batch_size}.")
    if model.preprocessor is None:
        raise ValueError(
            "Exporting needs the model's preprocessor (its image size and text "
            "length): load the model with `TIPSModel.from_preset`."
        )
    if tower == "vision":
        if image_size is None and not entry.dynamic_image_size:
            image_size = model.preprocessor.image_converter.image_size
        tower_keras_model = tower_model(model.backbone, "vision", image_size=image_size)
        output_names = VISION_OUTPUTS
    else:
        tower_keras_model = tower_model(
            model.backbone,
            "text",
            sequence_length=model.preprocessor.tokenizer.sequence_length,
        )
        output_names = TEXT_OUTPUTS
    require_backend(entry.backend, f"the {export_format!r} export")
    if batch_size is None and not entry.dynamic_batch:
        batch_size = 1
    if export_format == "onnx":
        _check_onnx_packages()
    if os.path.isdir(output):
        shutil.rmtree(output)
    elif os.path.exists(output):
        os.remove(output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    tower_keras_model.export(
        output,
        format=entry.keras_format,
        input_signature=_input_signature(tower_keras_model, batch_size),
        verbose=False,
    )
    if export_format == "onnx":
        _name_onnx_outputs(output, sorted(output_names))
    return output
