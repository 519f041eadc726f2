"""The released TIPSv2 DPT heads: their configurations and where they live.

Each head decodes the image tower of one TIPSv2 encoder preset
(`TIPS_PRESETS`) into a dense map: ADE20K semantic segmentation (150
classes), NYU depth (256 bins between 0.001 and 10 m) or surface normals.
The official release holds them as Scenic/Flax `.npy` arrays in a zip
archive (`<model>_<task>_dpt.zip`). `TIPSDPTHead.from_preset(name)` fetches
the archive once, converts it (checking it against `config` below) and
caches the preset; `KERAS_TIPS_CHECKPOINT_BASE_URL` and `KERAS_TIPS_HOME`
work as for the encoders.

Sizes, as the official decoder notebook builds them: DPT width (`channels`)
256 and `post_process_channels` (D/8, D/4, D/2, D) for an encoder of width
D, a "project" readout, no activation after the last convolution. The four
levels take the features of the blocks in `encoder_layers` at 448 px.
"""

from keras_tips.models.tips_presets import TIPS_PRESETS

DPT_BASE_URL = "https://storage.googleapis.com/tips_data/v2_0/checkpoints/scenic"

# Release file prefix: (encoder preset, encoder blocks feeding the four DPT
# levels, model name for descriptions).
_DPT_MODELS = {
    "tips_v2_b14": ("tips_v2_oss_b14", (2, 5, 8, 11), "ViT-B/14"),
    "tips_v2_l14": ("tips_v2_oss_l14", (5, 11, 17, 23), "ViT-L/14"),
    "tips_v2_so400m14": ("tips_v2_oss_so14", (6, 13, 20, 26), "ViT-So400m/14"),
    "tips_v2_g14": ("tips_v2_oss_g14", (9, 19, 29, 39), "ViT-g/14"),
}

DPT_TASKS = ("segmentation", "depth", "normals")

# The 150 classes of the released segmentation heads, by output channel:
# ADE20K's SceneParse150 benchmark, as the official decoder notebook names
# them.
ADE20K_CLASS_NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed",
    "windowpane", "grass", "cabinet", "sidewalk", "person", "earth", "door",
    "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
    "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace",
    "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill",
    "bench", "countertop", "stove", "palm", "kitchen island", "computer",
    "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel",
    "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television", "airplane", "dirt track", "apparel", "pole", "land",
    "bannister", "escalator", "ottoman", "bottle", "buffet", "poster", "stage",
    "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
    "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall",
    "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step",
    "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase",
    "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate",
    "monitor", "bulletin board", "shower", "radiator", "glass", "clock",
    "flag",
)

# What the released heads predict per pixel: ADE20K classes, NYU depth bins
# (centres from 0.001 to 10 m), (x, y, z) normals.
DEFAULT_NUM_OUTPUTS = {
    "segmentation": len(ADE20K_CLASS_NAMES),
    "depth": 256,
    "normals": 3,
}
DEFAULT_MIN_DEPTH = 0.001
DEFAULT_MAX_DEPTH = 10.0

# Task: (head config entries, what the head predicts).
_DPT_TASKS = {
    "segmentation": (
        {"num_outputs": DEFAULT_NUM_OUTPUTS["segmentation"]},
        "ADE20K semantic segmentation logits (150 classes)",
    ),
    "depth": (
        {
            "num_outputs": DEFAULT_NUM_OUTPUTS["depth"],
            "min_depth": DEFAULT_MIN_DEPTH,
            "max_depth": DEFAULT_MAX_DEPTH,
        },
        "NYU depth in metres (expectation over 256 bins in [0.001, 10])",
    ),
    "normals": (
        {"num_outputs": DEFAULT_NUM_OUTPUTS["normals"]},
        "surface normals (unnormalised)",
    ),
}


def _dpt_entry(model, task):
    encoder_preset, encoder_layers, model_name = _DPT_MODELS[model]
    width = TIPS_PRESETS[encoder_preset]["config"]["vision"]["hidden_dim"]
    task_config, what = _DPT_TASKS[task]
    name = f"{model}_{task}_dpt"
    return name, {
        "description": f"TIPSv2 {model_name} DPT head: {what}.",
        "encoder_preset": encoder_preset,
        "config": {
            "task": task,
            "input_embed_dim": width,
            "encoder_layers": list(encoder_layers),
            "channels": 256,
            "post_process_channels": [width // 8, width // 4, width // 2, width],
            "readout_type": "project",
            **task_config,
        },
        "url": f"{DPT_BASE_URL}/{name}.zip",
    }


TIPS_DPT_PRESETS = dict(
    _dpt_entry(model, task) for model in _DPT_MODELS for task in _DPT_TASKS
)
