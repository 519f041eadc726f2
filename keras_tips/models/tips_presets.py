"""The released TIPS checkpoints: their configurations and where they live.

Data only. Each entry gives the architecture (so a model can be built and
checked without weights), the image resolution of its preprocessor, the
official download locations of the PyTorch `.npz` files and tokenizer, a
description and, where published, the official parameter counts.
Downloading, converting and caching them is
`keras_tips.conversion.preset_cache`.
"""

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

