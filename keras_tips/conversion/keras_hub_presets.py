"""The registered checkpoints as keras-hub presets.

keras-hub lists a class's presets (`TIPSBackbone.presets`,
`TIPSModel.presets`) from entries registered with it, and its loader turns a
registered name into a preset location through the entry's `"kaggle_handle"`
(`keras_hub.src.utils.preset_utils.get_file`). The TIPS checkpoints are not
Keras presets on Kaggle but official files converted on first use, so each
entry here is a read-only mapping whose `"kaggle_handle"` is the converted
preset directory, made by `resolve_preset` (download, convert, cache) the
first time keras-hub asks for it. Every keras-hub loader then works with a
registered name: `TIPSBackbone.from_preset`,
`keras_hub.models.Backbone.from_preset`, `TIPSTokenizer.from_preset`,
`TIPSImageConverter.from_preset`, ...

The task class is an argument, as for `resolve_preset`: `TIPSModel`
registers the entries (`keras_tips/models/tips_model.py`).
"""

import collections.abc

from keras_tips.conversion.preset_cache import resolve_preset
from keras_tips.models.tips_presets import TIPS_PRESETS

MODEL_CARD = "https://github.com/google-deepmind/tips"


def parameter_count(config):
    """Parameters of a `TIPSBackbone` built from a registered config.

    Counted from the sizes (nothing is built): patch embedding, CLS,
    register and mask tokens, position table, blocks (LayerNorms, fused qkv,
    projection, LayerScales, feed-forward) and final LayerNorm of the image
    tower; token embedding, blocks and final LayerNorm of the text tower; the
    two temperatures.

    Args:
        config: a registered `"config"` (`{"vision": ..., "text": ...}`).

    Returns:
        int.
    """
    vision, text = config["vision"], config["text"]
    width, hidden = vision["hidden_dim"], vision["intermediate_dim"]
    patch = vision.get("patch_size", 14)
    grid = vision["position_grid_size"]
    if vision.get("ffn_type", "mlp") == "swiglu":
        ffn = width * 2 * hidden + 2 * hidden + hidden * width + width
    else:
        ffn = width * hidden + hidden + hidden * width + width
    block = (
        4 * width  # two LayerNorms
        + width * 3 * width + 3 * width  # qkv
        + width * width + width  # projection
        + 2 * width  # LayerScales
        + ffn
    )
    image = (
        patch * patch * 3 * width + width  # patch embedding
        + 3 * width  # CLS, register and mask tokens
        + (1 + grid * grid) * width  # position table
        + vision["num_layers"] * block
        + 2 * width  # final LayerNorm
    )
    width, hidden = text["hidden_dim"], text["intermediate_dim"]
    block = (
        4 * width
        + width * 3 * width + 3 * width
        + width * width + width
        + width * hidden + hidden + hidden * width + width
    )
    words = text["vocabulary_size"] * width + text["num_layers"] * block + 2 * width
    return image + words + 2


class RegisteredPreset(collections.abc.Mapping):
    """The keras-hub entry of a registered checkpoint: `"metadata"`, and a
    `"kaggle_handle"` that is the converted preset directory, fetched and
    converted when it is first read.

    Args:
        name: a name of `TIPS_PRESETS`.
        task_class: the task that converts the checkpoint (`TIPSModel`).
    """

    def __init__(self, name, task_class):
        entry = TIPS_PRESETS[name]
        self.name = name
        self.task_class = task_class
        self.metadata = {
            "description": entry["description"],
            "params": parameter_count(entry["config"]),
            "image_size": entry["config"]["image_size"],
            "official_params": entry.get("official_params"),
            "path": "tips",
            "model_card": MODEL_CARD,
        }

    def __getitem__(self, key):
        if key == "metadata":
            return self.metadata
        if key == "kaggle_handle":
            return resolve_preset(self.name, self.task_class)
        raise KeyError(key)

    def __iter__(self):
        return iter(("metadata", "kaggle_handle"))

    def __len__(self):
        return 2

    def __repr__(self):
        return (
            f"RegisteredPreset({self.name!r}, metadata={self.metadata!r}, "
            "kaggle_handle=<converted on first use>)"
        )


def keras_hub_presets(task_class):
    """keras-hub preset entries of every registered checkpoint.

    Args:
        task_class: the task that converts a checkpoint (`TIPSModel`).

    Returns:
        A dict of name -> `RegisteredPreset`, for
        `keras_hub.src.utils.preset_utils.register_presets`.
    """
    return {name: RegisteredPreset(name, task_class) for name in TIPS_PRESETS}
