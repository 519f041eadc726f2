"""
Title: Using a pretrained TIPS model
Author: keras_tips contributors
Date created: 2026/11/29
Last modified: 2026/11/29
Description: Image and text embeddings, zero-shot classification with both CLS tokens, and dense patch features (PCA, text similarity maps, zero-shot segmentation).
Accelerator: None
"""

"""
## Introduction

TIPS (Text-Image Pretraining with Spatial awareness, ICLR 2025) is a
CLIP-like image-text dual encoder whose *patch* features are good enough for
dense tasks such as segmentation and depth. Its image tower is a ViT with
14 x 14 pixel patches and **two CLS tokens**:

- **CLS1** is trained against noisy web alt-text ("my cat chelsea");
- **CLS2** is trained against rich synthetic captions ("close-up of the face
  of a tabby cat with green eyes and pink nose, looking at the camera").

The text tower is shared by both alignments. This guide shows how to:

1. load a TIPS preset;
2. encode images and texts;
3. classify images zero-shot with CLS1 and CLS2;
4. use the patch features: a PCA picture, a text similarity map and
   zero-shot segmentation from the value embeddings of the last block;
5. feed images of other sizes (non-square too) and raw `uint8` images.

**About the weights used here.** A real application loads one of the
released checkpoints by name, which downloads and converts it on first use
(see the "Converting official checkpoints" guide):

```python
model = keras_tips.TIPSModel.from_preset("tips_oss_b14_highres_distilled")
```

So that this guide runs offline in seconds, it uses the tiny random-weight
checkpoint in `tests/testdata/tips_tiny` instead: it has exactly the layout
of the official files (so it goes through the same converter and the same
code), but random weights and a 96-piece toy tokenizer. Every shape and
every call below is the same with a real preset; the *numbers* (which class
wins, what the maps highlight) are meaningless with random weights.
"""

"""
## Setup

keras_tips runs on JAX, TensorFlow and PyTorch; pick the backend before
importing Keras.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import tempfile

import keras
import numpy as np
from PIL import Image

import keras_tips
from keras_tips.data import ShapesDataset
from keras_tips.data.photos import SKIMAGE_PHOTOS
from keras_tips.data.photos import skimage_data_dir
from keras_tips.evaluation import build_zero_shot_classifier
from keras_tips.evaluation import mean_iou
from keras_tips.evaluation import patches_to_grid
from keras_tips.evaluation import similarity_maps
from keras_tips.evaluation import zero_shot_segment
from keras_tips.visualize import image_grid
from keras_tips.visualize import pca_image
from keras_tips.visualize import segmentation_overlay
from keras_tips.visualize import similarity_overlay

print("Keras", keras.__version__, "backend:", keras.backend.backend())

# Pictures and presets written by this guide go here.
OUTPUT_DIR = os.environ.get("KERAS_TIPS_GUIDE_OUTPUT") or tempfile.mkdtemp(
    prefix="keras_tips_guide_"
)
OUTPUT_DIR = os.path.join(OUTPUT_DIR, "using_pretrained_tips")
os.makedirs(OUTPUT_DIR, exist_ok=True)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CHECKPOINT = os.path.join(REPO_ROOT, "tests", "testdata", "tips_tiny")

"""
## Loading a preset

The released checkpoints are registered by name:
"""

for name in keras_tips.TIPSModel.presets_available():
    entry = keras_tips.TIPS_PRESETS[name]
    print(f"{name:48s} {entry['description']}")

"""
`TIPSModel.from_preset(name)` downloads the official `.npz` files of that
name once, converts them to a Keras preset under `~/.keras/keras_tips` and
loads it; later calls load the cached preset. `from_preset` also takes a
preset *directory*, which is what we do here after converting the tiny
reference checkpoint with the public converter (the same function
`keras-tips convert` calls):
"""

preset_dir = os.path.join(OUTPUT_DIR, "tips_tiny_preset")
keras_tips.convert_official_checkpoint(
    output_dir=preset_dir,
    overwrite=True,
    vision_path=os.path.join(TINY_CHECKPOINT, "vision.npz"),
    text_path=os.path.join(TINY_CHECKPOINT, "text.npz"),
    tokenizer_path=os.path.join(TINY_CHECKPOINT, "tokenizer.model"),
    image_size=56,
    # Standard widths (384, 768, 1024, 1152, 1536) need no head counts: they
    # are inferred. The toy width 64 does.
    vision_num_heads=4,
    text_num_heads=4,
    max_sequence_length=16,
)
model = keras_tips.TIPSModel.from_preset(preset_dir)

vision = model.backbone.vision_encoder
text = model.backbone.text_encoder
print(
    f"Image tower: {vision.num_layers} blocks of width {vision.hidden_dim}, "
    f"patch size {vision.patch_size}, {vision.count_params():,} parameters"
)
print(f"Text tower: {text.num_layers} blocks, {text.count_params():,} parameters")
print("Preset resolution:", model.preprocessor.image_converter.image_size)

"""
The model bundles a `TIPSBackbone` (`model.backbone`: the image tower
`vision_encoder`, the text tower `text_encoder` and the `contrastive_head`
holding the two learned temperatures) and a `TIPSPreprocessor`
(`model.preprocessor`: the tokenizer and the image converter).

## Preparing images

`encode_images` takes float images in `[0, 1]`, channels last, whose height
and width are multiples of 14. TIPS uses **no** mean/std normalisation.

Photos usually come as `uint8` arrays of any size. `model.preprocessor`
resizes them to the preset resolution (448 x 448 for the high-res
checkpoints, 56 x 56 for the toy one) and scales them to `[0, 1]`. We use
a few photographs that ship with scikit-image, so nothing is downloaded.
"""

photo_names = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg"]
web_captions = {name: web for name, web, _ in SKIMAGE_PHOTOS}
synthetic_captions = {name: synthetic for name, _, synthetic in SKIMAGE_PHOTOS}


def load_photo(name):
    with Image.open(os.path.join(skimage_data_dir(), name)) as image:
        return np.asarray(image.convert("RGB"))  # uint8 (H, W, 3)


photos = [load_photo(name) for name in photo_names]
print("Raw photo sizes:", [photo.shape for photo in photos])

# One photo at a time, since they have different sizes.
images = np.stack(
    [
        keras.ops.convert_to_numpy(model.preprocessor({"images": photo})["images"])
        for photo in photos
    ]
)
print("Preprocessed:", images.shape, images.dtype, images.min(), images.max())

"""
## Image and text embeddings

`encode_images` returns a dict of NumPy arrays: the two CLS embeddings
`(B, D)` and the patch tokens `(B, N, D)` in row-major order of the patch
grid. They are raw outputs of the final LayerNorm (not L2-normalised).
"""

features = model.encode_images(images)
for key, value in features.items():
    print(f"{key:8s} {value.shape}")
grid_h, grid_w = images.shape[1] // 14, images.shape[2] // 14
print(f"{images.shape[1]} x {images.shape[2]} px -> {grid_h} x {grid_w} patches")

"""
`encode_texts` tokenizes (lower-casing, SentencePiece, padding to the
tower's length) and encodes a list of strings; the text embedding is the
mean of the non-padding token outputs.
"""

text_embeddings = model.encode_texts(["a photo of a cat", "a photo of a rocket"])
print("Text embeddings:", text_embeddings.shape)
token_ids, padding_mask = model.tokenize(["a photo of a cat"])
print("Token ids:", token_ids[0], "real tokens:", int(padding_mask.sum()))

"""
Both towers compile once per input shape (a `jax.jit`, `tf.function` or
PyTorch inference-mode function) and run in chunks of `batch_size`, so
encoding a large set of images is a loop over `encode_images(chunk)`.

## Zero-shot classification with CLS1

Zero-shot classification compares the image embedding with the embedding of
one prompt per class. The logits are the cosine similarities divided by the
learned temperature of the alignment:
"""

class_names = ["astronaut", "coffee", "cat", "rocket"]
prompts = [f"a photo of a {name}." for name in class_names]
logits = model.zero_shot_logits(
    features["cls_1"], model.encode_texts(prompts), cls_token="cls_1"
)
print("Temperature (CLS1 / web):", model.temperature_for("cls_1"))
print("Logits:\n", np.round(logits, 2))

"""
`classify` does all of it, with prompt ensembling over several templates
(each class embedding is the normalised mean of its normalised template
embeddings) and a softmax:
"""

probabilities = model.classify(
    images,
    class_names,
    templates=["a photo of a {}.", "a picture of a {}.", "{}"],
    cls_token="cls_1",
)
for name, row in zip(photo_names, probabilities):
    best = int(np.argmax(row))
    print(f"CLS1 zero-shot: {name:14s} -> {class_names[best]} (p={row[best]:.2f})")

"""
The official TIPS evaluation uses **CLS1** for zero-shot classification:
class prompts are short, like web alt-text.

## Matching long descriptions with CLS2

CLS2 was aligned with long synthetic captions that describe the whole
scene: objects, attributes and where they are. For matching images with
descriptive text (retrieval with detailed queries, dense captions), compare
CLS2 with the text embeddings, using CLS2's own temperature:
"""

descriptions = [synthetic_captions[name] for name in photo_names]
logits_2 = model.zero_shot_logits(
    features["cls_2"], model.encode_texts(descriptions), cls_token="cls_2"
)
print("Temperature (CLS2 / synthetic):", model.temperature_for("cls_2"))
for name, row in zip(photo_names, logits_2):
    best = photo_names[int(np.argmax(row))]
    print(f"CLS2 retrieval: {name:14s} -> description of {best}")

probabilities_2 = model.classify(images, class_names, cls_token="cls_2")
print("CLS2 zero-shot probabilities:", probabilities_2.shape)

"""
With a released checkpoint each image picks its own class and its own
description; with the random toy weights used here the choices are
arbitrary.

## Dense features: the patch grid

The patch tokens reshape to an `(h, w, D)` grid, one vector per 14 x 14
patch. `patches_to_grid` does the reshape (it needs the image size for
non-square images):
"""

patch_grid = patches_to_grid(features["patches"], image_size=images.shape[1:3])
print("Patch grid:", patch_grid.shape)

"""
### A PCA picture

Projecting every patch onto the first three principal components of all
patches, and showing them as RGB, is a quick look at what the features
separate: with a trained model, objects and their parts come out as
coherent colour regions. Here we encode at 224 x 224 for a 16 x 16 grid
(see "Input sizes" below for why any multiple of 14 works).
"""


def resize_photo(photo, size):
    """uint8 (H, W, 3) -> float32 (size[0], size[1], 3) in [0, 1]."""
    converter = keras_tips.TIPSImageConverter(image_size=size)
    return keras.ops.convert_to_numpy(converter(photo))


large = np.stack([resize_photo(photo, (224, 224)) for photo in photos])
large_features = model.encode_images(large, return_value_patches=True)
large_grid = patches_to_grid(large_features["patches"], image_size=(224, 224))
pca = pca_image(large_grid, image_size=(224, 224))
path = os.path.join(OUTPUT_DIR, "pca.png")
image_grid(list(large) + list(pca), columns=len(large), path=path)
print("PCA picture:", pca.shape, "written to", path)

"""
(With the random toy weights, the picture mostly shows the position
embeddings: a smooth gradient across the grid, the same for every image.)

### A text similarity map

Text and patch embeddings live in the same space, so the cosine similarity
of each patch with a text query is a coarse localisation map. As in the
official TIPS notebooks, we use the **value embeddings** of the last block
(`return_value_patches=True`): the last block's attention is replaced by
each token's own value projection, which keeps the features local and
gives sharper maps than the output patch tokens.
"""

values = patches_to_grid(large_features["value_patches"], image_size=(224, 224))
query = model.encode_texts(["a red saucer"])
similarity = similarity_maps(values, query)[..., 0]  # (B, 16, 16)
print("Similarity maps:", similarity.shape)
overlays = [similarity_overlay(image, s) for image, s in zip(large, similarity)]
path = os.path.join(OUTPUT_DIR, "similarity.png")
image_grid(list(large) + overlays, columns=len(large), path=path)
print("Similarity picture written to", path)

"""
### Zero-shot segmentation

Comparing every patch's value embedding with one text embedding per class,
upsampling the scores to the image and taking the best class per pixel
gives a segmentation without any training. `build_zero_shot_classifier`
makes the class embeddings (with prompt ensembling), `zero_shot_segment`
does the rest.

We use scenes of the procedural shapes dataset that ships with keras_tips,
because they come with ground-truth masks to score against.
"""

scenes = ShapesDataset("test", num_examples=4, image_size=112)
examples = [scenes[i] for i in range(len(scenes))]
scene_images = np.stack([e["image"] for e in examples]).astype("float32") / 255.0
scene_masks = np.stack([e["class_mask"] for e in examples])
names = ["background"] + list(ShapesDataset.class_names)
classifier = build_zero_shot_classifier(
    model.encode_texts,
    names,
    templates=[lambda c: "a plain background." if c == "background" else f"a {c}."],
)
scene_values = patches_to_grid(
    model.encode_images(scene_images, return_value_patches=True)["value_patches"],
    image_size=(112, 112),
)
predicted = zero_shot_segment(scene_values, classifier, image_size=(112, 112))
print("Predicted masks:", predicted.shape, "classes used:", np.unique(predicted))
miou = mean_iou(predicted, scene_masks, num_classes=len(names))
print(f"Zero-shot segmentation mIoU on 4 scenes: {miou:.3f}")
path = os.path.join(OUTPUT_DIR, "zero_shot_segmentation.png")
image_grid(
    list(scene_images)
    + [segmentation_overlay(i, m) for i, m in zip(scene_images, scene_masks)]
    + [segmentation_overlay(i, p) for i, p in zip(scene_images, predicted)],
    columns=len(scene_images),
    path=path,
)
print("Segmentation picture written to", path)

"""
For pixels that belong to none of the classes, `zero_shot_segment` takes a
`background_threshold` (on the cosine, or on the softmax probability when a
`temperature` is given) and then labels low-scoring pixels 0.

## Input sizes

The learned position embeddings are resized (bilinear, antialiased, as in
the official code) to the patch grid of each input, so any height and
width that are multiples of 14 work, non-square ones included. Larger
inputs give finer patch grids; the released checkpoints were trained at
448 x 448 (224 x 224 for `tips_oss_g14_lowres`).
"""

for height, width in [(56, 56), (112, 112), (112, 168), (42, 70)]:
    sized = np.random.default_rng(0).random((1, height, width, 3), dtype="float32")
    out = model.encode_images(sized)
    print(
        f"{height:3d} x {width:3d} px -> grid {height // 14} x {width // 14}, "
        f"patches {out['patches'].shape}"
    )

"""
Sizes that are not multiples of 14 and unscaled `uint8` arrays are refused
with a message that says how to fix them:
"""

for bad in (
    np.zeros((1, 100, 100, 3), "float32"),
    np.zeros((1, 56, 56, 3), "uint8"),
    np.zeros((1, 3, 56, 56), "float32"),
):
    try:
        model.encode_images(bad)
    except ValueError as error:
        print("ValueError:", error)

"""
To keep the aspect ratio of a photo, resize it yourself to a multiple of 14
on each side, e.g. `TIPSImageConverter(image_size=(448, 588))`, instead of
squashing it to the preset's square resolution.

## More outputs

- `encode_images(images, patch_mask=mask)` replaces the masked patches by
  the learned mask token (the input of masked image modelling);
- `encode_images(images, return_intermediates=True)` also returns every
  block's output (`intermediate_cls_1`, `intermediate_cls_2`,
  `intermediate_patches`), for probing earlier layers.
"""

mask = np.zeros((1, 16), bool)
mask[0, :8] = True  # the top half of a 4 x 4 grid
masked = model.encode_images(images[:1], patch_mask=mask, return_intermediates=True)
print("intermediate_patches:", masked["intermediate_patches"].shape)

"""
## Next steps

- *Converting official checkpoints*: where the released files live, the
  converter, the cache and what can go wrong.
- *Segmentation head on frozen TIPS*: train a small head on these patch
  features with `model.fit`.
- *Pretraining TIPS*: train your own TIPS with the full objective.
"""

print("Done: using_pretrained_tips")
