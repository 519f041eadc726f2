"""Hugging Face TIPSv2 snapshots -> a Keras task and its preset.

A snapshot of a `transformers` TIPSv2 model is a folder (or a Hub
repository, `hf://google/tipsv2-b14`) with `config.json`
(`"model_type": "tipsv2"`), the weights in `model.safetensors` (or shards
listed in `model.safetensors.index.json`) and the tokenizer files. The
weights are stored in the official layout under two prefixes,
`vision_encoder.` and `text_encoder.` (`transformers` renames them when it
loads them, and back when it saves), so they are read with the official key
maps of `official_checkpoint`: sizes are inferred from the arrays, checked
against `config.json`, and a missing, unexpected or mis-shaped tensor is
refused by name. The GELU feed-forward of the image tower is the one
difference: `save_pretrained` names it `mlp.c_fc` / `mlp.c_proj`, the
released files `mlp.fc1` / `mlp.fc2`; both are read.

Text keeps the official tokenization: the SentencePiece `tokenizer.model` of
the snapshot with the official rules (ASCII-only lower-casing, no BOS/EOS,
padding with 0), not `transformers`' `Tipsv2Tokenizer`, whose BPE
conversion drops characters missing from the vocabulary (SentencePiece maps
them to `<unk>`) and lower-cases every script (`tf.strings.lower`, which the
official pipeline uses, only ASCII).

The task class is an argument, as in `official_preset`.
"""

import hashlib
import json
import os
import re

from keras_tips.atomic_files import check_output_dir
from keras_tips.atomic_files import save_preset_atomically
from keras_tips.conversion.official_checkpoint import load_official_text_weights
from keras_tips.conversion.official_checkpoint import load_official_vision_weights
from keras_tips.conversion.official_checkpoint import text_config_from_state
from keras_tips.conversion.official_checkpoint import vision_config_from_state
from keras_tips.conversion.official_preset import assemble_task
from keras_tips.errors import CheckpointError
from keras_tips.models.tips_text_encoder import TIPSTextEncoder
from keras_tips.models.tips_vision_encoder import TIPSVisionEncoder

HF_SCHEME = "hf://"
MODEL_TYPE = "tipsv2"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
TOKENIZER_FILE = "tokenizer.model"
# What a conversion reads of a Hub repository (`snapshot_download`).
SNAPSHOT_PATTERNS = (CONFIG_FILE, "*.safetensors", WEIGHTS_INDEX_FILE, TOKENIZER_FILE)
VISION_PREFIX = "vision_encoder."
TEXT_PREFIX = "text_encoder."
# `save_pretrained`'s names of the image tower's GELU feed-forward -> the
# official ones.
_VISION_RENAMES = ((".mlp.c_fc.", ".mlp.fc1."), (".mlp.c_proj.", ".mlp.fc2."))
# Settings the TIPS towers have no choice of: config key, the value TIPS
# computes (also `transformers`' default), what it means.
_FIXED_SETTINGS = (
    ("vision_config", "num_register_tokens", 1, "one register token (CLS2)"),
    ("vision_config", "qkv_bias", True, "biased qkv projections"),
    ("text_config", "hidden_act", "relu", "a ReLU feed-forward"),
    ("text_config", "scale_sqrt_depth", True, "token embeddings scaled by sqrt(width)"),
    ("text_config", "pooling_epsilon", 1e-8, "mean pooling with a 1e-8 floor"),
)
_REVISION = re.compile(r"[0-9a-f]{40}")


def read_config(directory):
    """The `config.json` of a folder as a dict, or None when it has none or
    it is not a Hugging Face TIPSv2 config (no `"model_type"`)."""
    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as error:
        raise CheckpointError(
            f"The file {path!r} is not valid JSON ({error}). Is it complete?"
        ) from error
    if not isinstance(config, dict) or "model_type" not in config:
        return None
    return config


def is_hf_snapshot(directory):
    """Whether `directory` holds a Hugging Face TIPSv2 snapshot (a
    `config.json` of model type `tipsv2` or `tipsv2_dpt`)."""
    config = read_config(directory)
    return config is not None and str(config["model_type"]).startswith(MODEL_TYPE)


def read_safetensors(directory):
    """Every tensor of a snapshot's `model.safetensors` (or of the shards
    its `model.safetensors.index.json` lists), as NumPy arrays.

    Raises:
        CheckpointError: no weights file, or one that cannot be read.
    """
    try:
        from safetensors.numpy import load_file
    except ImportError as error:
        raise ImportError(
            "Reading Hugging Face checkpoints needs the `safetensors` package: "
            "`pip install safetensors`."
        ) from error
    index = os.path.join(directory, WEIGHTS_INDEX_FILE)
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                files = sorted(set(json.load(f)["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise CheckpointError(
                f"Could not read the shard index {index!r} ({error})."
            ) from error
    elif os.path.isfile(os.path.join(directory, WEIGHTS_FILE)):
        files = [WEIGHTS_FILE]
    else:
        raise CheckpointError(
            f"The Hugging Face snapshot {directory!r} has no {WEIGHTS_FILE} "
            f"(nor {WEIGHTS_INDEX_FILE}): download the model's weights too."
        )
    state = {}
    for name in files:
        path = os.path.join(directory, name)
        try:
            state.update(load_file(path))
        except Exception as error:  # Missing, truncated or foreign files.
            raise CheckpointError(
                f"Could not read {path!r} as safetensors ({type(error).__name__}: "
                f"{error}). Is the file complete?"
            ) from error
    return state


def split_state(state):
    """Splits a snapshot's tensors into the official vision and text state
    dicts (prefixes removed, feed-forward names made official) and the
    temperature (None when the file has none).

    Raises:
        CheckpointError: a tensor belongs to neither tower.
    """
    vision, text, temperature, unexpected = {}, {}, None, []
    for key, value in state.items():
        if key.startswith(VISION_PREFIX):
            key = key[len(VISION_PREFIX) :]
            for old, new in _VISION_RENAMES:
                key = key.replace(old, new)
            vision[key] = value
        elif key.startswith(TEXT_PREFIX):
            text[key[len(TEXT_PREFIX) :]] = value
        elif key == "temperature":
            temperature = float(value)
        else:
            unexpected.append(key)
    if unexpected:
        hint = (
            " They are named as transformers' modules (vision_model.*): "
            "re-save the model with transformers >= 5.14 `save_pretrained`, "
            "which writes the released layout."
            if any(k.startswith(("vision_model.", "text_model.")) for k in unexpected)
            else ""
        )
        raise CheckpointError(
            f"The Hugging Face checkpoint has tensors of neither tower: "
            f"{sorted(unexpected)[:8]}.{hint}"
        )
    return vision, text, temperature


def _check_config(config, vision_kwargs, text_kwargs):
    """Refuses a config asking for what TIPS does not compute, or sizes
    that differ from the weights'."""
    for section, key, value, meaning in _FIXED_SETTINGS:
        given = config.get(section, {}).get(key, value)
        if given != value:
            raise CheckpointError(
                f"config.json sets {section}.{key}={given!r}; TIPS towers have "
                f"{meaning} ({key}={value!r})."
            )
    vision, text = config.get("vision_config", {}), config.get("text_config", {})
    activation = vision.get("hidden_act", "gelu")
    if not vision.get("use_swiglu_ffn", False) and activation != "gelu":
        raise CheckpointError(
            f"config.json sets vision_config.hidden_act={activation!r}; the "
            "TIPS image tower uses the exact GELU ('gelu')."
        )
    swiglu = vision_kwargs["ffn_type"] == "swiglu"
    if vision.get("use_swiglu_ffn", False) != swiglu:
        raise CheckpointError(
            f"config.json sets vision_config.use_swiglu_ffn="
            f"{vision.get('use_swiglu_ffn', False)} but the weights hold "
            f"{'a SwiGLU' if swiglu else 'an MLP'} feed-forward: they do not "
            "belong together."
        )
    sizes = (
        ("vision_config", vision, "hidden_size", vision_kwargs["hidden_dim"]),
        ("vision_config", vision, "num_hidden_layers", vision_kwargs["num_layers"]),
        ("vision_config", vision, "patch_size", vision_kwargs["patch_size"]),
        ("text_config", text, "hidden_size", text_kwargs["hidden_dim"]),
        ("text_config", text, "num_hidden_layers", text_kwargs["num_layers"]),
        ("text_config", text, "intermediate_size", text_kwargs["intermediate_dim"]),
        ("text_config", text, "vocab_size", text_kwargs["vocabulary_size"]),
    )
    for section, values, key, from_weights in sizes:
        if key in values and values[key] != from_weights:
            raise CheckpointError(
                f"config.json sets {section}.{key}={values[key]} but the weights "
                f"have {from_weights}: they do not belong together."
            )


def build_task_from_hf_snapshot(task_class, directory):
    """Builds a task holding the weights of a Hugging Face TIPSv2 snapshot.

    Args:
        task_class: the `keras_hub.models.Task` to build (`TIPSModel`).
        directory: str. A snapshot folder: `config.json`, `model.safetensors`
            (or shards) and `tokenizer.model`.

    Returns:
        A `task_class` instance, its preprocessor at the config's
        `vision_config.image_size`.

    Raises:
        CheckpointError: not a TIPSv2 snapshot, a missing file, or weights
            that do not fit the config or the towers (named).

    Example:
    ```python
    model = build_task_from_hf_snapshot(keras_tips.TIPSModel, "tipsv2-b14")
    ```
    """
    directory = os.fspath(directory)
    config = read_config(directory)
    if config is None or config["model_type"] != MODEL_TYPE:
        found = None if config is None else config["model_type"]
        raise CheckpointError(
            f"{directory!r} is not a Hugging Face TIPSv2 snapshot: its "
            f"{CONFIG_FILE} has model_type {found!r}, not {MODEL_TYPE!r}"
            + (
                " (DPT heads load with keras_tips.TIPSDPTHead presets)."
                if found == "tipsv2_dpt"
                else "."
            )
        )
    tokenizer_path = os.path.join(directory, TOKENIZER_FILE)
    if not os.path.isfile(tokenizer_path):
        raise CheckpointError(
            f"The snapshot {directory!r} has no {TOKENIZER_FILE}: TIPS "
            "tokenizes with the SentencePiece model, as officially. Download "
            "it with the weights."
        )
    vision_state, text_state, temperature = split_state(read_safetensors(directory))
    if temperature is None:
        # Released snapshots store no temperature: transformers uses the
        # config's initial value, and so does this.
        temperature = float(config.get("temperature_init_value", 0.01))
    vision_config = config.get("vision_config", {})
    text_config = config.get("text_config", {})
    vision_kwargs = vision_config_from_state(
        vision_state, vision_config.get("num_attention_heads")
    )
    text_kwargs = text_config_from_state(
        text_state,
        text_config.get("num_attention_heads"),
        text_config.get("max_position_embeddings", 64),
    )
    _check_config(config, vision_kwargs, text_kwargs)
    vision_encoder = TIPSVisionEncoder(
        **vision_kwargs,
        layer_norm_epsilon=vision_config.get("layer_norm_eps", 1e-6),
        name="vision_encoder",
    )
    vision_encoder.build()
    load_official_vision_weights(vision_encoder, vision_state)
    text_encoder = TIPSTextEncoder(
        **text_kwargs,
        layer_norm_epsilon=text_config.get("layer_norm_eps", 1e-5),
        name="text_encoder",
    )
    text_encoder.build()
    load_official_text_weights(text_encoder, text_state)
    image_size = vision_config.get("image_size", 448)
    if not isinstance(image_size, int):
        image_size = tuple(int(side) for side in image_size)
    return assemble_task(
        task_class,
        vision_encoder,
        text_encoder,
        temperature=temperature,
        tokenizer_path=tokenizer_path,
        image_size=image_size,
    )


def convert_hf_snapshot(task_class, directory, output_dir, overwrite=False):
    """Converts a Hugging Face TIPSv2 snapshot into a preset directory,
    written to a temporary folder and moved into place at the end.

    Args:
        task_class: the task to build and save (`TIPSModel`).
        directory: str. The snapshot folder.
        output_dir: str. Preset directory to create.
        overwrite: bool. Replace an existing `output_dir`.

    Returns:
        The converted `task_class` instance.
    """
    output_dir = check_output_dir(output_dir, overwrite)
    task = build_task_from_hf_snapshot(task_class, directory)
    save_preset_atomically(task, output_dir)
    return task


def snapshot_cache_key(directory):
    """Where a snapshot's conversion is cached: `(name, revision)`.

    A snapshot inside a Hugging Face cache (`models--org--name/snapshots/
    <commit>`) is named by its repository and commit; any other folder by
    its name and a SHA-256 of the files a conversion reads, so an edited
    snapshot is converted again.
    """
    directory = os.path.abspath(os.fspath(directory))
    revision = os.path.basename(directory)
    parent = os.path.dirname(directory)
    if _REVISION.fullmatch(revision) and os.path.basename(parent) == "snapshots":
        repository = os.path.basename(os.path.dirname(parent))
        return repository.removeprefix("models--"), revision
    digest = hashlib.sha256()
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if os.path.isfile(path) and (
            name in (CONFIG_FILE, WEIGHTS_INDEX_FILE, TOKENIZER_FILE)
            or name.endswith(".safetensors")
        ):
            digest.update(name.encode("utf-8") + b"\0")
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 24), b""):
                    digest.update(chunk)
    return os.path.basename(directory) or "snapshot", digest.hexdigest()[:16]


def download_hf_config(handle):
    """The local path of `config.json` of an `hf://org/name` repository
    (downloaded with `huggingface_hub`, cached by it).

    Raises:
        RuntimeError: the file cannot be downloaded (the message says how to
            load a snapshot downloaded elsewhere).
    """
    return _hub_call("hf_hub_download", handle, filename=CONFIG_FILE)


def download_hf_snapshot(handle):
    """Downloads what a conversion reads of an `hf://org/name` repository;
    returns the local snapshot folder."""
    return _hub_call(
        "snapshot_download", handle, allow_patterns=list(SNAPSHOT_PATTERNS)
    )


def _hub_call(function, handle, **kwargs):
    repo_id = handle.removeprefix(HF_SCHEME)
    try:
        import huggingface_hub
    except ImportError as error:
        raise ImportError(
            f"Loading {handle!r} needs the `huggingface_hub` package: "
            "`pip install huggingface_hub`."
        ) from error
    try:
        return getattr(huggingface_hub, function)(repo_id=repo_id, **kwargs)
    except Exception as error:  # Network, authentication and name errors.
        raise RuntimeError(
            f"Could not download {handle!r} from the Hugging Face Hub "
            f"({type(error).__name__}: {error}). If this machine is offline, "
            "download the snapshot elsewhere (config.json, model.safetensors, "
            "tokenizer.model) and load its folder, or set HF_HUB_OFFLINE=1 to "
            "use the Hub's local cache."
        ) from error
