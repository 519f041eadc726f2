"""Reads the official TIPS PyTorch `.npz` checkpoints into Keras encoders.

The official release stores each tower as a flat `.npz` of PyTorch tensors
(`<name>_vision.npz`, `<name>_text.npz`). Sizes are inferred from the arrays;
the head count is not stored, so it comes from the standard ViT widths (or
an explicit argument). Every key must be used exactly once and every shape
must match: a wrong, partial or foreign checkpoint fails loudly here instead
of producing a quietly wrong model.
"""

import os
import re
import zipfile

import numpy as np

from keras_tips.errors import CheckpointError
from keras_tips.layers.positions import position_grid_size_from_table

# Attention heads of the standard ViT widths used by TIPS (S, B, L, So400m, g).
HEADS_BY_WIDTH = {384: 6, 768: 12, 1024: 16, 1152: 16, 1536: 24}


def read_npz(path, description="checkpoint"):
    """Loads every array of an `.npz` file, without pickle.

    Args:
        path: str. Path to the `.npz` file.
        description: str. What the file is, for error messages.

    Returns:
        A dict of name -> `np.ndarray`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"The {description} file {path!r} does not exist.")
    if not zipfile.is_zipfile(path):
        # np.load would return a single array for a `.npy` file and try
        # other formats; an `.npz` is a zip archive.
        raise CheckpointError(
            f"The {description} {path!r} is not a NumPy .npz archive (not a "
            "zip file). Is the file complete?"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            # Zip tools may add folder entries ("decoder/"): no arrays.
            return {
                name: archive[name]
                for name in archive.files
                if not name.endswith("/")
            }
    except MemoryError as error:
        raise CheckpointError(
            f"The {description} {path!r} declares arrays too large to load; "
            "is it damaged?"
        ) from error
    except Exception as error:
        # Damaged archives raise many types (BadZipFile, zlib.error,
        # NotImplementedError, RuntimeError, struct.error, EOFError, ...).
        raise CheckpointError(
            f"Could not read the {description} {path!r} as a NumPy .npz "
            f"archive without pickle ({type(error).__name__}: {error}). Is "
            "the file complete?"
        ) from error


def _count_blocks(state, prefix):
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for k in state for m in [pattern.match(k)] if m}
    if not indices:
        return 0
    if indices != set(range(max(indices) + 1)):
        raise CheckpointError(
            f"The blocks under {prefix!r} are not numbered 0..N-1: "
            f"{sorted(indices)}."
        )
    return len(indices)


def _require(state, key, description):
    if key not in state:
        raise CheckpointError(
            f"The {description} has no {key!r}: this does not look like an "
            f"official TIPS {description}."
        )
    return state[key]


def _heads(width, num_heads, tower):
    if num_heads is not None:
        return int(num_heads)
    if width not in HEADS_BY_WIDTH:
        raise CheckpointError(
            f"The {tower} tower has a non-standard width {width}; pass its "
            "number of attention heads explicitly (num_heads / --*-num-heads)."
        )
    return HEADS_BY_WIDTH[width]


def vision_config_from_state(state, num_heads=None):
    """Infers `TIPSVisionEncoder` arguments from an official state dict."""
    desc = "vision checkpoint"
    width = _require(state, "cls_token", desc).shape[-1]
    patch = _require(state, "patch_embed.proj.weight", desc)
    num_layers = _count_blocks(state, "blocks.")
    if num_layers == 0:
        raise CheckpointError(f"The {desc} has no `blocks.N.*` entries.")
    if "blocks.0.mlp.w12.weight" in state:
        ffn_type = "swiglu"
        intermediate_dim = state["blocks.0.mlp.w12.weight"].shape[0] // 2
    else:
        ffn_type = "mlp"
        intermediate_dim = _require(state, "blocks.0.mlp.fc1.weight", desc).shape[0]
    positions = _require(state, "pos_embed", desc)
    return {
        "hidden_dim": int(width),
        "num_layers": num_layers,
        "num_heads": _heads(int(width), num_heads, "vision"),
        "intermediate_dim": int(intermediate_dim),
        "patch_size": int(patch.shape[-1]),
        "position_grid_size": position_grid_size_from_table(positions.shape[1]),
        "ffn_type": ffn_type,
    }


def text_config_from_state(state, num_heads=None, max_sequence_length=64):
    """Infers `TIPSTextEncoder` arguments from an official state dict."""
    desc = "text checkpoint"
    vocabulary_size, width = _require(
        state, "token_embedding.weight", desc
    ).shape
    num_layers = _count_blocks(state, "transformer.resblocks.")
    if num_layers == 0:
        raise CheckpointError(
            f"The {desc} has no `transformer.resblocks.N.*` entries."
        )
    mlp = _require(state, "transformer.resblocks.0.mlp.c_fc.weight", desc)
    return {
        "vocabulary_size": int(vocabulary_size),
        "hidden_dim": int(width),
        "num_layers": num_layers,
        "num_heads": _heads(int(width), num_heads, "text"),
        "intermediate_dim": int(mlp.shape[0]),
        "max_sequence_length": int(max_sequence_length),
    }


# Layout changes between PyTorch and Keras, each with its inverse. Dense
# kernels are (out, in) in PyTorch and (in, out) in Keras; convolution
# kernels (out, in, kh, kw) and (kh, kw, in, out).
TRANSPOSE = "transpose"
CONV = "conv"
_TO_KERAS = {
    None: lambda w: w,
    TRANSPOSE: np.transpose,
    CONV: lambda w: np.transpose(w, (2, 3, 1, 0)),
}
_TO_OFFICIAL = {
    None: lambda w: w,
    TRANSPOSE: np.transpose,
    CONV: lambda w: np.transpose(w, (3, 2, 0, 1)),
}


def _dense(layer, prefix):
    """(variable, official key, layout) triples of a `Dense` layer."""
    pairs = [(layer.kernel, f"{prefix}.weight", TRANSPOSE)]
    if layer.use_bias:
        pairs.append((layer.bias, f"{prefix}.bias", None))
    return pairs


def _norm(layer, prefix):
    return [(layer.gamma, f"{prefix}.weight", None), (layer.beta, f"{prefix}.bias", None)]


def vision_weight_map(encoder):
    """Pairs each Keras variable of a vision encoder with its official key."""
    pairs = [
        (encoder.cls_token, "cls_token", None),
        (encoder.register_token, "register_tokens", None),
        (encoder.mask_token, "mask_token", None),
        (encoder.position_embedding, "pos_embed", None),
        (encoder.patch_embedding.kernel, "patch_embed.proj.weight", CONV),
        (encoder.patch_embedding.bias, "patch_embed.proj.bias", None),
    ]
    for index, block in enumerate(encoder.blocks):
        p = f"blocks.{index}"
        pairs += _norm(block.norm1, f"{p}.norm1")
        pairs += _dense(block.attention.qkv, f"{p}.attn.qkv")
        pairs += _dense(block.attention.proj, f"{p}.attn.proj")
        pairs.append((block.layer_scale1.gamma, f"{p}.ls1.gamma", None))
        pairs += _norm(block.norm2, f"{p}.norm2")
        if encoder.ffn_type == "swiglu":
            pairs += _dense(block.ffn.w12, f"{p}.mlp.w12")
            pairs += _dense(block.ffn.w3, f"{p}.mlp.w3")
        else:
            pairs += _dense(block.ffn.fc1, f"{p}.mlp.fc1")
            pairs += _dense(block.ffn.fc2, f"{p}.mlp.fc2")
        pairs.append((block.layer_scale2.gamma, f"{p}.ls2.gamma", None))
    pairs += _norm(encoder.norm, "norm")
    return pairs


def text_weight_map(encoder):
    """Pairs each Keras variable of a text encoder with its official key."""
    pairs = [(encoder.token_embedding.embeddings, "token_embedding.weight", None)]
    for index, block in enumerate(encoder.blocks):
        p = f"transformer.resblocks.{index}"
        pairs.append((block.attention.qkv.kernel, f"{p}.attn.in_proj_weight", TRANSPOSE))
        pairs.append((block.attention.qkv.bias, f"{p}.attn.in_proj_bias", None))
        pairs += _dense(block.attention.proj, f"{p}.attn.out_proj")
        pairs += _norm(block.norm1, f"{p}.ln_1")
        pairs += _dense(block.mlp.fc1, f"{p}.mlp.c_fc")
        pairs += _dense(block.mlp.fc2, f"{p}.mlp.c_proj")
        pairs += _norm(block.norm2, f"{p}.ln_2")
    pairs += _norm(encoder.norm, "ln_final")
    return pairs


def assign_weights(pairs, state, description, ignore=()):
    """Assigns official arrays to Keras variables, strictly.

    Args:
        pairs: list of (variable, key, layout) from a `*_weight_map`.
        state: dict of official arrays.
        description: str, for error messages.
        ignore: keys that may be present without a variable (e.g. the
            temperature stored beside the text tower).

    Raises:
        CheckpointError: on a missing key, an unexpected key or a wrong shape.
    """
    expected = {key for _, key, _ in pairs}
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected - set(ignore))
    if missing or unexpected:
        raise CheckpointError(
            f"The {description} does not fit the model: missing keys "
            f"{missing[:8]}{'...' if len(missing) > 8 else ''}, unexpected keys "
            f"{unexpected[:8]}{'...' if len(unexpected) > 8 else ''}."
        )
    for variable, key, layout in pairs:
        value = _TO_KERAS[layout](np.asarray(state[key], dtype="float32"))
        if tuple(value.shape) != tuple(variable.shape):
            raise CheckpointError(
                f"Shape mismatch for {key!r} in the {description}: the "
                f"checkpoint has {tuple(state[key].shape)}, the model expects "
                f"{tuple(_TO_OFFICIAL[layout](np.zeros(variable.shape)).shape)}."
            )
        variable.assign(value)


def export_official_state(pairs):
    """The inverse of `assign_weights`: Keras variables -> official arrays.

    Args:
        pairs: list of (variable, key, layout) from a `*_weight_map`.

    Returns:
        A dict of official key -> float32 array, ready for `np.savez`.
    """
    import keras

    return {
        key: _TO_OFFICIAL[layout](
            keras.ops.convert_to_numpy(variable).astype("float32")
        )
        for variable, key, layout in pairs
    }


def load_official_vision_weights(encoder, state):
    """Copies an official vision state dict into a `TIPSVisionEncoder`."""
    assign_weights(vision_weight_map(encoder), state, "vision checkpoint")


def load_official_text_weights(encoder, state):
    """Copies an official text state dict into a `TIPSTextEncoder`."""
    assign_weights(
        text_weight_map(encoder), state, "text checkpoint", ignore=("temperature",)
    )
