"""The released TIPS checkpoints: their configurations and where they live.

Each entry gives the architecture (so a model can be built and checked
without weights), the image resolution of its preprocessor, and the official
download locations of the PyTorch `.npz` files. `resolve_preset(name)`
downloads those files once (`keras.utils.get_file`, cached), converts them to
a Keras preset directory and returns that directory; later calls reuse it.

Set `KERAS_TIPS_CHECKPOINT_BASE_URL` to a mirror (any URL `get_file` reads,
including `file://` paths) to fetch from somewhere else, and
`KERAS_TIPS_HOME` to move the cache (default `~/.keras/keras_tips`).
"""

import os

_TOKENIZER_URL = "https://storage.googleapis.com/tips_data/v1_0/checkpoints/tokenizer.model"
_V1_BASE = "https://storage.googleapis.com/tips_data/v1_0/checkpoints/pytorch"
_V2_BASE = "https://storage.googleapis.com/tips_data/v2_0/checkpoints/pytorch"

# Standard ViT widths: (width, depth, heads, MLP width). The text tower has
# the width of its image tower and 12 layers, except So400m (27 layers).
_VIT = {
    "S": (384, 12, 6, 1536),
    "B": (768, 12, 12, 3072),
    "L": (1024, 24, 16, 4096),
    "So400m": (1152, 27, 16, 4304),
    "g": (1536, 40, 24, 4096),  # fused SwiGLU: 4096 per gated half
}


def _config(variant, image_size, position_grid_size):
    width, depth, heads, mlp = _VIT[variant]
    text_mlp = 6144 if variant == "g" else mlp
    return {
        "vision": {
            "hidden_dim": width,
            "num_layers": depth,
            "num_heads": heads,
            "intermediate_dim": mlp,
            "patch_size": 14,
            "position_grid_size": position_grid_size,
            "ffn_type": "swiglu" if variant == "g" else "mlp",
        },
        "text": {
            "vocabulary_size": 32000,
            "hidden_dim": width,
            "num_layers": 27 if variant == "So400m" else 12,
            "num_heads": heads,
            "intermediate_dim": text_mlp,
            "max_sequence_length": 64,
        },
        "image_size": image_size,
    }


def _entry(name, variant, base, image_size, grid, description, params=None):
    entry = {
        "description": description,
        "config": _config(variant, image_size, grid),
        "vision_url": f"{base}/{name}_vision.npz",
        "text_url": f"{base}/{name}_text.npz",
        "tokenizer_url": _TOKENIZER_URL,
    }
    if params:
        entry["official_params"] = {"vision": params[0], "text": params[1]}
    return entry


# Official parameter counts (image tower at its pretraining grid, text tower).
TIPS_PRESETS = {
    "tips_oss_s14_highres_distilled": _entry(
        "tips_oss_s14_highres_distilled", "S", _V1_BASE, 448, 32,
        "TIPS ViT-S/14, 448 px, distilled from g/14.", (21_924_480, 33_582_336),
    ),
    "tips_oss_b14_highres_distilled": _entry(
        "tips_oss_b14_highres_distilled", "B", _V1_BASE, 448, 32,
        "TIPS ViT-B/14, 448 px, distilled from g/14.", (86_316_288, 109_632_000),
    ),
    "tips_oss_l14_highres_distilled": _entry(
        "tips_oss_l14_highres_distilled", "L", _V1_BASE, 448, 32,
        "TIPS ViT-L/14, 448 px, distilled from g/14.", (304_016_384, 183_924_736),
    ),
    "tips_oss_so400m14_highres_largetext_distilled": _entry(
        "tips_oss_so400m14_highres_largetext_distilled", "So400m", _V1_BASE,
        448, 32, "TIPS ViT-So400m/14, 448 px, 27-layer text tower, distilled.",
        (413_393_904, 448_332_912),
    ),
    "tips_oss_g14_highres": _entry(
        "tips_oss_g14_highres", "g", _V1_BASE, 448, 32,
        "TIPS ViT-g/14 (fused SwiGLU), 448 px.", (1_135_952_384, 389_133_312),
    ),
    "tips_oss_g14_lowres": _entry(
        "tips_oss_g14_lowres", "g", _V1_BASE, 224, 16,
        "TIPS ViT-g/14 (fused SwiGLU), 224 px.",
    ),
    # TIPSv2: the official loader builds these with the same image and text
    # encoder classes as v1 (same keys, 448 px, 32 x 32 position grid); the
    # strict converter checks every key and shape when they are fetched.
    "tips_v2_oss_b14": _entry(
        "tips_v2_oss_b14", "B", _V2_BASE, 448, 32, "TIPSv2 ViT-B/14, 448 px."
    ),
    "tips_v2_oss_l14": _entry(
        "tips_v2_oss_l14", "L", _V2_BASE, 448, 32, "TIPSv2 ViT-L/14, 448 px."
    ),
    "tips_v2_oss_so14": _entry(
        "tips_v2_oss_so14", "So400m", _V2_BASE, 448, 32,
        "TIPSv2 ViT-So400m/14, 448 px, 27-layer text tower.",
    ),
    "tips_v2_oss_g14": _entry(
        "tips_v2_oss_g14", "g", _V2_BASE, 448, 32,
        "TIPSv2 ViT-g/14 (fused SwiGLU), 448 px.",
    ),
}


def keras_tips_home():
    """Root of the local cache of downloads and converted presets."""
    return os.path.expanduser(
        os.environ.get("KERAS_TIPS_HOME", os.path.join("~", ".keras", "keras_tips"))
    )


def _source_url(url):
    mirror = os.environ.get("KERAS_TIPS_CHECKPOINT_BASE_URL")
    if not mirror:
        return url
    return mirror.rstrip("/") + "/" + url.rsplit("/", 1)[1]


def _fetch(url, cache_dir):
    import keras

    url = _source_url(url)
    fname = url.rsplit("/", 1)[1]
    # get_file falls back to /tmp/.keras when cache_dir does not exist yet.
    os.makedirs(os.path.join(cache_dir, "downloads"), exist_ok=True)
    try:
        return keras.utils.get_file(
            fname=fname, origin=url, cache_dir=cache_dir, cache_subdir="downloads"
        )
    except Exception as error:  # get_file raises several network errors.
        raise RuntimeError(
            f"Could not download {url} ({error}). If this machine is offline, "
            "download the file elsewhere and convert it with `keras-tips "
            "convert --vision V.npz --text T.npz --tokenizer tokenizer.model "
            "--output DIR`, then load DIR; or set "
            "KERAS_TIPS_CHECKPOINT_BASE_URL to a local mirror."
        ) from error


PRESET_FILES = (
    "config.json",
    "metadata.json",
    "tokenizer.json",
    "preprocessor.json",
    "image_converter.json",
    os.path.join("assets", "tokenizer", "vocabulary.spm"),
)


def check_preset_dir(preset_dir):
    """Raises a clear error when a local preset directory is incomplete."""
    missing = [
        name
        for name in PRESET_FILES
        if not os.path.isfile(os.path.join(preset_dir, name))
    ]
    has_weights = any(
        os.path.isfile(os.path.join(preset_dir, name))
        for name in ("model.weights.h5", "model.weights.json")
    )
    if not has_weights:
        missing.append("model.weights.h5")
    if missing:
        raise FileNotFoundError(
            f"The preset directory {preset_dir!r} is incomplete: missing "
            f"{', '.join(missing)}. Re-create it with `model.save_to_preset` "
            "or `keras-tips convert`."
        )


def resolve_preset(preset):
    """Returns a local preset directory for `preset`.

    A registered name is downloaded and converted on first use, then reused.
    Anything else (a directory, a Kaggle or Hugging Face handle) is returned
    unchanged for keras-hub to load.

    Args:
        preset: a name from `TIPS_PRESETS` or a keras-hub preset handle.

    Returns:
        str, a preset handle keras-hub can load.
    """
    if preset not in TIPS_PRESETS:
        if isinstance(preset, (str, os.PathLike)) and os.path.isdir(preset):
            check_preset_dir(os.fspath(preset))
            return os.fspath(preset)
        if isinstance(preset, str) and "://" not in preset:
            raise ValueError(
                f"Unknown preset {preset!r}: not a directory and not one of "
                f"the registered names {sorted(TIPS_PRESETS)}."
            )
        return preset
    entry = TIPS_PRESETS[preset]
    cache_dir = keras_tips_home()
    preset_dir = os.path.join(cache_dir, "presets", preset)
    if os.path.isfile(os.path.join(preset_dir, "model.weights.h5")):
        return preset_dir
    from keras_tips.conversion.convert import convert_official_checkpoint

    vision = _fetch(entry["vision_url"], cache_dir)
    text = _fetch(entry["text_url"], cache_dir)
    tokenizer = _fetch(entry["tokenizer_url"], cache_dir)
    text_config = entry["config"]["text"]
    convert_official_checkpoint(
        vision_path=vision,
        text_path=text,
        tokenizer_path=tokenizer,
        output_dir=preset_dir,
        overwrite=True,
        image_size=entry["config"]["image_size"],
        vision_num_heads=entry["config"]["vision"]["num_heads"],
        text_num_heads=text_config["num_heads"],
        max_sequence_length=text_config.get("max_sequence_length", 64),
    )
    return preset_dir
