"""
Title: Converting the official TIPS checkpoints
Author: keras_tips contributors
Date created: 2026/11/29
Last modified: 2026/11/29
Description: Where the released TIPS files live, `keras-tips convert`, the preset registry and its cache, the errors you may meet, and presets across backends.
Accelerator: None
"""

"""
## Introduction

The official TIPS release is a set of PyTorch checkpoints saved as NumPy
`.npz` archives, plus one SentencePiece tokenizer. keras_tips converts them
into a **Keras preset**: a directory with the model configuration, the
weights and the tokenizer, which `keras_tips.TIPSModel.from_preset` loads on
JAX, TensorFlow or PyTorch. This guide covers:

1. the official files and where they live;
2. converting them with `keras-tips convert` or
   `keras_tips.convert_official_checkpoint`;
3. the registry of released names and what `from_preset(name)` does
   (download, convert, cache);
4. the errors you may see and what they mean;
5. saving presets and loading them on another backend.

To run offline, the guide converts the tiny random-weight checkpoint in
`tests/testdata/tips_tiny` instead of a released one. Its files have
exactly the official layout (key names, array layouts, tokenizer
conventions); only the sizes differ, so every step is the one you would run
on `tips_oss_b14_highres_distilled`.
"""

"""
## Setup
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np

import keras_tips
from keras_tips.cli.main import main as keras_tips_cli

OUTPUT_DIR = os.environ.get("KERAS_TIPS_GUIDE_OUTPUT") or tempfile.mkdtemp(
    prefix="keras_tips_guide_"
)
OUTPUT_DIR = os.path.join(OUTPUT_DIR, "converting_official_checkpoints")
if os.path.exists(OUTPUT_DIR):
    shutil.rmtree(OUTPUT_DIR)
os.makedirs(OUTPUT_DIR)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CHECKPOINT = os.path.join(REPO_ROOT, "tests", "testdata", "tips_tiny")
print("Backend:", keras.backend.backend())

"""
## The official files

Every released model is two files, plus a tokenizer shared by all of them:

| file | contents |
| --- | --- |
| `<name>_vision.npz` | the image tower's PyTorch state dict |
| `<name>_text.npz` | the text tower's state dict and the scalar `temperature` |
| `tokenizer.model` | the SentencePiece model (32,000 pieces) |

They live in the public Google Cloud Storage bucket of the TIPS release,
`https://storage.googleapis.com/tips_data/` (`v1_0/checkpoints/pytorch/` for
TIPS, `v2_0/checkpoints/pytorch/` for TIPSv2). keras_tips knows every
released name and its URLs:
"""

for name in keras_tips.TIPSModel.presets_available():
    entry = keras_tips.TIPS_PRESETS[name]
    vision = entry["config"]["vision"]
    print(
        f"{name:46s} width {vision['hidden_dim']:4d}, {vision['num_layers']:2d} "
        f"blocks, {entry['config']['image_size']} px"
    )
print()
print(keras_tips.TIPS_PRESETS["tips_oss_b14_highres_distilled"]["vision_url"])
print(keras_tips.TIPS_PRESETS["tips_oss_b14_highres_distilled"]["text_url"])
print(keras_tips.TIPS_PRESETS["tips_oss_b14_highres_distilled"]["tokenizer_url"])

"""
Let us look inside the tiny stand-in files. The image tower's keys are
those of the official DINOv2-style ViT: `cls_token` (CLS1),
`register_tokens` (the second CLS token, CLS2), `pos_embed` (one entry for
CLS1 plus a square grid), `mask_token`, the patch embedding convolution and
`blocks.N.*`. The text tower is a CLIP-style transformer whose `temperature`
travels in the same file.
"""

with np.load(os.path.join(TINY_CHECKPOINT, "vision.npz")) as archive:
    vision_state = {key: archive[key] for key in archive.files}
with np.load(os.path.join(TINY_CHECKPOINT, "text.npz")) as archive:
    text_state = {key: archive[key] for key in archive.files}
print(f"vision.npz: {len(vision_state)} arrays")
for key in list(vision_state)[:5] + ["blocks.0.attn.qkv.weight", "norm.weight"]:
    print(f"  {key:32s} {vision_state[key].shape}")
temperature = float(text_state["temperature"])
print(f"text.npz: {len(text_state)} arrays, temperature = {temperature:.4f}")

"""
The converter reads these archives **without pickle**, infers the
architecture from the arrays (width, depth, MLP type, position grid,
vocabulary), maps each array to its Keras variable (transposing PyTorch's
`(out, in)` linear weights and `(out, in, h, w)` convolution kernels) and
refuses any missing key, unexpected key or wrong shape. Attention head
counts cannot be read off the arrays; they are inferred for the standard
widths (S, B, L, So400m, g) and must be given for any other width, as for
the toy model below.

## Converting with `keras-tips convert`

With the three files downloaded (for example with `wget` or
`gsutil cp` on a machine that has network access), one command writes a
preset directory:

```bash
keras-tips convert \\
    --vision tips_oss_b14_highres_distilled_vision.npz \\
    --text tips_oss_b14_highres_distilled_text.npz \\
    --tokenizer tokenizer.model \\
    --output tips_b14 --image-size 448
```

`--image-size` is the preprocessor's resolution (448 for the high-res
checkpoints, 224 for `tips_oss_g14_lowres`); it does not restrict the
sizes the model accepts. Here we call the same command line from Python
on the toy files:
"""

cli_preset = os.path.join(OUTPUT_DIR, "tips_tiny_cli")
status = keras_tips_cli(
    [
        "convert",
        "--vision", os.path.join(TINY_CHECKPOINT, "vision.npz"),
        "--text", os.path.join(TINY_CHECKPOINT, "text.npz"),
        "--tokenizer", os.path.join(TINY_CHECKPOINT, "tokenizer.model"),
        "--output", cli_preset,
        "--image-size", "56",
        "--vision-num-heads", "4",
        "--text-num-heads", "4",
        "--max-sequence-length", "16",
    ]
)  # fmt: skip
print("exit status:", status)
for root, _, files in sorted(os.walk(cli_preset)):
    for file in sorted(files):
        path = os.path.join(root, file)
        size = os.path.getsize(path)
        print(f"  {os.path.relpath(path, cli_preset):34s} {size:>9,d} bytes")

"""
## Converting from Python

`keras_tips.convert_official_checkpoint` takes the same arguments and
returns the converted `TIPSModel`. The preset is written to a temporary
folder beside `output_dir` and moved into place at the end, so an
interrupted conversion never leaves half a preset behind.
"""

python_preset = os.path.join(OUTPUT_DIR, "tips_tiny_python")
model = keras_tips.convert_official_checkpoint(
    output_dir=python_preset,
    vision_path=os.path.join(TINY_CHECKPOINT, "vision.npz"),
    text_path=os.path.join(TINY_CHECKPOINT, "text.npz"),
    tokenizer_path=os.path.join(TINY_CHECKPOINT, "tokenizer.model"),
    image_size=56,
    vision_num_heads=4,
    text_num_heads=4,
    max_sequence_length=16,
)
print("Temperature:", model.temperature_for("cls_1"))

"""
### Checking the conversion

The test data also holds what the official PyTorch code computes from these
files (`golden.npz`): images, their CLS and patch tokens (after the final
LayerNorm), texts and their embeddings. A faithful conversion reproduces them to float32
round-off (the official images are channels-first; Keras takes channels
last):
"""

with np.load(os.path.join(TINY_CHECKPOINT, "golden.npz")) as archive:
    golden = {key: archive[key] for key in archive.files}
images = np.transpose(golden["image_0"], (0, 2, 3, 1))
features = model.encode_images(images)
errors = {
    "cls_1": np.abs(features["cls_1"] - golden["image_0_cls1"]).max(),
    "cls_2": np.abs(features["cls_2"] - golden["image_0_cls2"]).max(),
    "patches": np.abs(features["patches"] - golden["image_0_patches"]).max(),
    "texts": np.abs(
        model.encode_texts([str(t) for t in golden["texts"]]) - golden["text_embeddings"]
    ).max(),
}
for key, error in errors.items():
    print(f"max |keras - official| for {key:8s}: {error:.1e}")
assert max(errors.values()) < 1e-5

"""
The test suite (`tests/models/test_parity.py`) runs the same comparison
on every backend, at several input sizes, for the masked forward pass, the
intermediate layers and a second checkpoint with the fused SwiGLU MLP of
the g/14 models.

## The registry and `from_preset(name)`

A registered name needs no manual step at all:

```python
model = keras_tips.TIPSModel.from_preset("tips_oss_b14_highres_distilled")
```

On first use this

1. downloads `<name>_vision.npz`, `<name>_text.npz` and `tokenizer.model`
   with `keras.utils.get_file` into `$KERAS_TIPS_HOME/downloads`;
2. converts them into the preset `$KERAS_TIPS_HOME/presets/<name>`;
3. loads that preset.

Later calls find the converted preset and load it directly, without
network. `KERAS_TIPS_HOME` defaults to `~/.keras/keras_tips`.
`KERAS_TIPS_CHECKPOINT_BASE_URL` replaces the bucket with any mirror that
`get_file` reads: an internal HTTP server, or a `file://` folder on a
shared disk, which is handy for machines without internet access.

We can run this path offline: put the toy files in a local folder under the
official file names, point `KERAS_TIPS_CHECKPOINT_BASE_URL` at it, and add
an entry for them to the registry (a plain dict; an entry needs the
description, the URLs and the configuration fields the converter uses).
"""

mirror = os.path.join(OUTPUT_DIR, "mirror")
os.makedirs(mirror)
demo_name = "tips_tiny_demo"
for source, target in [
    ("vision.npz", f"{demo_name}_vision.npz"),
    ("text.npz", f"{demo_name}_text.npz"),
    ("tokenizer.model", "tokenizer.model"),
]:
    shutil.copy(os.path.join(TINY_CHECKPOINT, source), os.path.join(mirror, target))

keras_tips.TIPS_PRESETS[demo_name] = {
    "description": "The toy reference checkpoint of the test suite.",
    "config": {
        "vision": {"num_heads": 4},
        "text": {"num_heads": 4, "max_sequence_length": 16},
        "image_size": 56,
    },
    "vision_url": f"https://storage.invalid/{demo_name}_vision.npz",
    "text_url": f"https://storage.invalid/{demo_name}_text.npz",
    "tokenizer_url": "https://storage.invalid/tokenizer.model",
}
os.environ["KERAS_TIPS_HOME"] = os.path.join(OUTPUT_DIR, "keras_tips_home")
os.makedirs(os.environ["KERAS_TIPS_HOME"], exist_ok=True)
os.environ["KERAS_TIPS_CHECKPOINT_BASE_URL"] = "file://" + os.path.abspath(mirror)

start = time.time()
first = keras_tips.TIPSModel.from_preset(demo_name)
print(f"First load (fetch + convert + load): {time.time() - start:.1f} s")
for root, _, files in sorted(os.walk(os.environ["KERAS_TIPS_HOME"])):
    depth = os.path.relpath(root, os.environ["KERAS_TIPS_HOME"])
    if depth.count(os.sep) < 2 and files:
        print(f"  {depth}/: {', '.join(sorted(files))}")

"""
The second call does not touch the mirror at all. To prove it, we empty
the mirror first:
"""

for file in os.listdir(mirror):
    os.remove(os.path.join(mirror, file))
start = time.time()
again = keras_tips.TIPSModel.from_preset(demo_name)
print(f"Second load (cached preset): {time.time() - start:.1f} s")
same = np.array_equal(again.encode_texts(["two cows"]), first.encode_texts(["two cows"]))
print("Same text embedding after reloading:", same)

"""
To force a fresh conversion (say, after upgrading keras_tips), delete
`$KERAS_TIPS_HOME/presets/<name>`; the downloads stay cached in
`$KERAS_TIPS_HOME/downloads`.

## Errors you may see

Every failure names its cause. The common ones:
"""


def show_error(title, function):
    try:
        function()
    except Exception as error:  # Each case below raises on purpose.
        print(f"{title}\n  {type(error).__name__}: {error}\n")
    else:
        raise AssertionError(f"{title}: expected an error")


# A name that is neither registered nor a directory (a typo).
show_error(
    "Unknown name:",
    lambda: keras_tips.TIPSModel.from_preset("tips_oss_b14_highres_distiled"),
)

# No network and no mirror: the download fails, with the offline recipe.
os.environ["KERAS_TIPS_CHECKPOINT_BASE_URL"] = "file://" + os.path.abspath(
    os.path.join(OUTPUT_DIR, "no_such_mirror")
)
show_error(
    "Unreachable download:",
    lambda: keras_tips.TIPSModel.from_preset("tips_oss_s14_highres_distilled"),
)
del os.environ["KERAS_TIPS_CHECKPOINT_BASE_URL"]


def convert(output_dir, **overrides):
    arguments = dict(
        output_dir=output_dir,
        vision_path=os.path.join(TINY_CHECKPOINT, "vision.npz"),
        text_path=os.path.join(TINY_CHECKPOINT, "text.npz"),
        tokenizer_path=os.path.join(TINY_CHECKPOINT, "tokenizer.model"),
        image_size=56,
        vision_num_heads=4,
        text_num_heads=4,
        max_sequence_length=16,
    )
    arguments.update(overrides)
    return keras_tips.convert_official_checkpoint(**arguments)


# The vision and text files swapped.
show_error(
    "Files swapped:",
    lambda: convert(
        os.path.join(OUTPUT_DIR, "swapped"),
        vision_path=os.path.join(TINY_CHECKPOINT, "text.npz"),
        text_path=os.path.join(TINY_CHECKPOINT, "vision.npz"),
    ),
)

# A file cut short by an interrupted download.
truncated = os.path.join(OUTPUT_DIR, "truncated_vision.npz")
with open(os.path.join(TINY_CHECKPOINT, "vision.npz"), "rb") as source:
    data = source.read()
with open(truncated, "wb") as target:
    target.write(data[: len(data) // 2])
show_error(
    "Truncated download:",
    lambda: convert(os.path.join(OUTPUT_DIR, "truncated"), vision_path=truncated),
)

# A checkpoint that does not match the architecture (here: a missing array).
edited = dict(vision_state)
del edited["blocks.1.ls1.gamma"]
edited_path = os.path.join(OUTPUT_DIR, "edited_vision.npz")
np.savez(edited_path, **edited)
show_error(
    "Missing array:",
    lambda: convert(os.path.join(OUTPUT_DIR, "edited"), vision_path=edited_path),
)

# A head count that does not divide the width.
show_error(
    "Wrong head count:",
    lambda: convert(os.path.join(OUTPUT_DIR, "heads"), vision_num_heads=6),
)

# Converting over an existing preset needs `overwrite=True` (`--overwrite`).
show_error("Existing output:", lambda: convert(python_preset))

# A preset directory missing a file (e.g. a partial copy).
partial = os.path.join(OUTPUT_DIR, "partial_copy")
shutil.copytree(python_preset, partial)
os.remove(os.path.join(partial, "model.weights.h5"))
show_error("Incomplete preset:", lambda: keras_tips.TIPSModel.from_preset(partial))

"""
From the command line the same errors end `keras-tips convert` with exit
status 2 and a one-line `keras-tips convert: error: ...` message.

## Saving and sharing presets

A preset is an ordinary keras-hub preset. After fine-tuning, save yours
with `save_to_preset`, and load it back with `from_preset`; the backbone,
the tokenizer and the preprocessor can also be loaded on their own:
"""

saved = os.path.join(OUTPUT_DIR, "my_tips")
model.save_to_preset(saved)
print(sorted(os.listdir(saved)))
with open(os.path.join(saved, "metadata.json")) as f:
    print("metadata:", json.load(f))
backbone = keras_tips.TIPSBackbone.from_preset(saved)
tokenizer = keras_tips.TIPSTokenizer.from_preset(saved)
print(f"{type(backbone).__name__} ({backbone.count_params():,} parameters), "
      f"{type(tokenizer).__name__} ({tokenizer.vocabulary_size()} pieces)")

"""
keras-hub's `upload_preset` publishes a preset directory on Kaggle Models or
the Hugging Face Hub, after which `from_preset` takes the handle directly:

```python
import keras_hub

keras_hub.upload_preset("hf://my-org/tips-b14-finetuned", "my_tips")
model = keras_tips.TIPSModel.from_preset("hf://my-org/tips-b14-finetuned")
```

### Across backends

The weights file stores plain arrays, so a preset written on one backend
loads on any other. Here a fresh PyTorch (or, without PyTorch, TensorFlow)
process loads the preset this JAX process saved, and both compute the same
embeddings:
"""

other_backend = "torch" if importlib.util.find_spec("torch") else "tensorflow"
reference_images = np.random.default_rng(0).random((2, 56, 84, 3), dtype="float32")
np.save(os.path.join(OUTPUT_DIR, "images.npy"), reference_images)
script = f"""
import numpy as np
import keras_tips
model = keras_tips.TIPSModel.from_preset({saved!r})
images = np.load({os.path.join(OUTPUT_DIR, "images.npy")!r})
cls_1 = model.encode_images(images)["cls_1"]
np.save({os.path.join(OUTPUT_DIR, "other_cls.npy")!r}, cls_1)
np.save({os.path.join(OUTPUT_DIR, "other_text.npy")!r}, model.encode_texts(["a dog"]))
"""
result = subprocess.run(
    [sys.executable, "-c", script],
    env=dict(os.environ, KERAS_BACKEND=other_backend, TF_CPP_MIN_LOG_LEVEL="3"),
    capture_output=True,
    text=True,
    timeout=300,
)
if result.returncode:
    raise RuntimeError(result.stderr[-2000:])
cls_difference = np.abs(
    np.load(os.path.join(OUTPUT_DIR, "other_cls.npy"))
    - model.encode_images(reference_images)["cls_1"]
).max()
text_difference = np.abs(
    np.load(os.path.join(OUTPUT_DIR, "other_text.npy")) - model.encode_texts(["a dog"])
).max()
print(
    f"{other_backend} vs {keras.backend.backend()}: max difference "
    f"CLS1 {cls_difference:.1e}, text {text_difference:.1e}"
)
assert max(cls_difference, text_difference) < 1e-4

"""
## Summary

- Released names load with `TIPSModel.from_preset(name)`: downloaded once,
  converted once, cached under `KERAS_TIPS_HOME`.
- Offline, mirror the files (`KERAS_TIPS_CHECKPOINT_BASE_URL`) or convert
  them with `keras-tips convert` and load the directory.
- The converter checks every key and shape and says what does not fit.
- Presets are backend-independent keras-hub presets.
"""

print("Done: converting_official_checkpoints")
