"""
Title: A segmentation head on a frozen TIPS encoder
Author: keras_tips contributors
Date created: 2026/11/29
Last modified: 2026/11/29
Description: Embed the TIPS image tower in a functional Keras model, freeze it, and train a small semantic segmentation head on its patch features with `model.fit`.
Accelerator: None
"""

"""
## Introduction

TIPS's patch features are meant to be used by dense heads: the paper
evaluates them with a *linear* probe for semantic segmentation and depth on
top of the frozen encoder. Because the TIPS image tower is an ordinary Keras
layer, it drops into any Keras model. This guide

1. wraps `model.backbone.vision_encoder` in a functional Keras model that
   takes `uint8` images and outputs per-pixel class logits;
2. freezes the encoder (`trainable = False`) and trains only a small head
   (two 1 x 1 convolutions on the patch grid, then bilinear upsampling by
   the patch size) with `model.fit`;
3. scores the predictions with `keras_tips.evaluation.mean_iou`;
4. saves and reloads the whole model, and shows how to fine-tune the
   encoder too.

The data are scenes of the procedural shapes dataset shipped with
keras_tips, which come with per-pixel class masks (background + 6 shapes).

**About the encoder used here.** A real application starts from a released
checkpoint:

```python
tips = keras_tips.TIPSModel.from_preset("tips_oss_b14_highres_distilled")
```

To run offline in a minute on a CPU, this guide converts the tiny
random-weight reference checkpoint in `tests/testdata/tips_tiny` instead
(same layout as the official files, 64-wide, 2 blocks). Its random
features still carry the colour and position of each patch, so the head
learns something, but expect far better masks from a pretrained encoder.
"""

"""
## Setup
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import shutil
import tempfile

import keras
import numpy as np

import keras_tips
from keras_tips.data import ShapesDataset
from keras_tips.evaluation import mean_iou
from keras_tips.visualize import image_grid
from keras_tips.visualize import segmentation_overlay

OUTPUT_DIR = os.environ.get("KERAS_TIPS_GUIDE_OUTPUT") or tempfile.mkdtemp(
    prefix="keras_tips_guide_"
)
OUTPUT_DIR = os.path.join(OUTPUT_DIR, "segmentation_head_on_frozen_tips")
if os.path.exists(OUTPUT_DIR):
    shutil.rmtree(OUTPUT_DIR)
os.makedirs(OUTPUT_DIR)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CHECKPOINT = os.path.join(REPO_ROOT, "tests", "testdata", "tips_tiny")
keras.utils.set_random_seed(0)
print("Backend:", keras.backend.backend())

"""
## The encoder
"""

preset_dir = os.path.join(OUTPUT_DIR, "tips_tiny_preset")
keras_tips.convert_official_checkpoint(
    output_dir=preset_dir,
    vision_path=os.path.join(TINY_CHECKPOINT, "vision.npz"),
    text_path=os.path.join(TINY_CHECKPOINT, "text.npz"),
    tokenizer_path=os.path.join(TINY_CHECKPOINT, "tokenizer.model"),
    image_size=56,
    vision_num_heads=4,
    text_num_heads=4,
    max_sequence_length=16,
)
tips = keras_tips.TIPSModel.from_preset(preset_dir)
encoder = tips.backbone.vision_encoder
print(
    f"{type(encoder).__name__}: width {encoder.hidden_dim}, "
    f"{encoder.num_layers} blocks, patch size {encoder.patch_size}"
)

"""
Only the image tower is needed; the text tower and the rest of the
`TIPSModel` are simply not used.

## The data

`ShapesDataset` renders scenes on the fly. Each example has the `uint8`
image and a `class_mask`: 0 for background, `c` for
`ShapesDataset.class_names[c - 1]`. We use 112 x 112 images, an 8 x 8 patch
grid.
"""

IMAGE_SIZE = 112
CLASS_NAMES = ["background"] + list(ShapesDataset.class_names)
NUM_CLASSES = len(CLASS_NAMES)


def load(split, num_examples):
    dataset = ShapesDataset(split, num_examples, IMAGE_SIZE, seed=0)
    examples = [dataset[i] for i in range(num_examples)]
    images = np.stack([e["image"] for e in examples])  # uint8 (N, H, W, 3)
    masks = np.stack([e["class_mask"] for e in examples])  # int32 (N, H, W)
    return images, masks


train_images, train_masks = load("train", 320)
test_images, test_masks = load("test", 96)
print("train:", train_images.shape, train_images.dtype, train_masks.shape)
print("test: ", test_images.shape)
counts = np.bincount(train_masks.ravel(), minlength=NUM_CLASSES)
share = counts / counts.sum()
print("pixel share:", {n: round(float(v), 3) for n, v in zip(CLASS_NAMES, share)})

"""
## The model

The TIPS image tower takes float images in `[0, 1]` whose sides are
multiples of 14, and returns a dict; its `"patches"` entry is `(B, N, D)`
in row-major order of the patch grid, which a `Reshape` turns into a
`(B, h, w, D)` feature map. The head is two 1 x 1 convolutions (a per-patch
MLP) followed by bilinear upsampling by the patch size back to pixels.

**Freezing.** Setting `encoder.trainable = False` moves all its weights to
`non_trainable_weights`: the optimizer never updates them and no gradient
is computed for them. Calling it with `training=False` also keeps it in
inference mode (no stochastic depth) even while the head trains.
"""

encoder.trainable = False

grid = IMAGE_SIZE // encoder.patch_size
images = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype="uint8", name="images")
x = keras.layers.Rescaling(1.0 / 255.0, name="to_unit_range")(images)
features = encoder(x, training=False)
x = keras.layers.Reshape((grid, grid, encoder.hidden_dim), name="patch_grid")(
    features["patches"]
)
x = keras.layers.Conv2D(128, 1, activation="gelu", name="head_hidden")(x)
x = keras.layers.Conv2D(NUM_CLASSES, 1, name="head_logits")(x)
logits = keras.layers.UpSampling2D(
    size=encoder.patch_size, interpolation="bilinear", name="to_pixels"
)(x)
segmenter = keras.Model(images, logits, name="tips_segmenter")

trainable = sum(int(np.prod(w.shape)) for w in segmenter.trainable_weights)
frozen = sum(int(np.prod(w.shape)) for w in segmenter.non_trainable_weights)
print(f"output: {segmenter.output.shape}")
print(f"trainable parameters: {trainable:,} (head); frozen: {frozen:,} (TIPS encoder)")

"""
## Training the head

The loss is the per-pixel cross-entropy against the class mask. Background
covers most pixels, so we weight each pixel by the inverse square root of
its class's frequency (passed to `fit` as a per-pixel `sample_weight`):
otherwise "background everywhere" is a comfortable minimum.
"""

class_weights = 1.0 / np.sqrt(share)
class_weights /= class_weights[train_masks].mean()
weights = {n: round(float(w), 2) for n, w in zip(CLASS_NAMES, class_weights)}
print("class weights:", weights)

segmenter.compile(
    optimizer=keras.optimizers.AdamW(learning_rate=3e-3, weight_decay=1e-4),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    weighted_metrics=["accuracy"],
)
encoder_before = [w.copy() for w in encoder.get_weights()]
EPOCHS = 16
history = segmenter.fit(
    train_images,
    train_masks,
    sample_weight=class_weights[train_masks],  # (N, H, W): one per pixel
    batch_size=32,
    epochs=EPOCHS,
    validation_split=0.1,
    verbose=0,
)
for epoch in (0, EPOCHS // 2 - 1, EPOCHS - 1):
    print(
        f"epoch {epoch + 1:2d}: loss {history.history['loss'][epoch]:.3f}, "
        f"weighted pixel accuracy {history.history['accuracy'][epoch]:.3f}, "
        f"validation loss {history.history['val_loss'][epoch]:.3f}"
    )
unchanged = all(
    np.array_equal(a, b) for a, b in zip(encoder_before, encoder.get_weights())
)
print("encoder weights unchanged by training:", unchanged)

"""
Because the encoder is frozen, its output never changes: for larger data
or longer training it is much cheaper to run `encoder` once over the
dataset, store the patch grids and train the head on those (this is what
`keras_tips.evaluation.fit_segmentation_probe` does for linear probes).
Keeping the encoder inside the model, as here, gives one model that maps
images to masks, for deployment or later fine-tuning.

## Evaluation

The predicted class of a pixel is the argmax of its logits. `mean_iou`
averages the intersection over union of the classes present in the
predictions or the masks:
"""

predicted = np.argmax(segmenter.predict(test_images, batch_size=32, verbose=0), axis=-1)
miou, per_class = mean_iou(
    predicted, test_masks, num_classes=NUM_CLASSES, return_per_class=True
)
background_only = mean_iou(np.zeros_like(test_masks), test_masks, num_classes=NUM_CLASSES)
print(f"test mIoU: {miou:.3f} (predicting background everywhere: {background_only:.3f})")
for name, iou in zip(CLASS_NAMES, per_class):
    print(f"  {name:10s} IoU {iou:.3f}")

path = os.path.join(OUTPUT_DIR, "predictions.png")
shown = range(6)
image_grid(
    [test_images[i] for i in shown]
    + [segmentation_overlay(test_images[i], test_masks[i]) for i in shown]
    + [segmentation_overlay(test_images[i], predicted[i]) for i in shown],
    columns=len(shown),
    path=path,
)
print("Pictures (images, ground truth, predictions) written to", path)

"""
How good is this? With the random toy encoder, not very: its features
mostly tell patches apart by colour and position, so the head finds the
shapes but hardly which shape each one is. The same code on a released
TIPS encoder separates the classes, which is what the paper's linear-probe
results measure.

## Saving and reloading

The TIPS layers are registered Keras serializables, so the whole
application model, encoder included, saves to a single `.keras` file and
loads back without any custom-object argument. In a new program, import
`keras_tips.models` first: importing it registers the TIPS layers with
Keras.
"""

path = os.path.join(OUTPUT_DIR, "tips_segmenter.keras")
segmenter.save(path)
import keras_tips.models  # noqa: E402,F401 (registers the TIPS layers)

reloaded = keras.saving.load_model(path)
# The frozen flag is saved; set it again before training the reloaded
# model further, so that it reaches every sub-layer of the encoder.
reloaded.get_layer("vision_encoder").trainable = False
same = np.allclose(
    reloaded.predict(test_images[:4], verbose=0),
    segmenter.predict(test_images[:4], verbose=0),
    atol=1e-5,
)
print(f"reloaded from {os.path.basename(path)}; same predictions: {same}")

"""
## Fine-tuning the encoder

Once the head has converged, unfreezing the encoder and training everything
with a much smaller learning rate often adapts the features to the task.
Changing `trainable` requires compiling again:
"""

encoder.trainable = True
segmenter.compile(
    optimizer=keras.optimizers.AdamW(learning_rate=1e-4, weight_decay=1e-4),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    weighted_metrics=["accuracy"],
)
trainable = sum(int(np.prod(w.shape)) for w in segmenter.trainable_weights)
print(f"trainable parameters after unfreezing: {trainable:,}")
segmenter.fit(
    train_images,
    train_masks,
    sample_weight=class_weights[train_masks],
    batch_size=32,
    epochs=1,
    verbose=0,
)
predicted = np.argmax(segmenter.predict(test_images, batch_size=32, verbose=0), axis=-1)
miou = mean_iou(predicted, test_masks, num_classes=NUM_CLASSES)
print(f"test mIoU after one epoch of fine-tuning: {miou:.3f}")

"""
With a pretrained ViT-B/14, use the preset's resolution (448 x 448, a
32 x 32 grid) or larger inputs for sharper masks; layer-wise learning-rate
decay (`keras_tips.training.optimizers.build_optimizer(layer_decay=...)`)
keeps the early blocks closer to their pretrained values during
fine-tuning.

## Variations

- **Linear probe**: replace the head by a single `Conv2D(NUM_CLASSES, 1)`;
  this is the paper's protocol for comparing encoders.
- **Depth**: one output channel and a regression loss, with the shapes
  dataset's `depth` maps (`keras_tips.evaluation.fit_depth_probe` does it
  on stored features).
- **Several layers**: call the encoder with `return_intermediates=True` and
  concatenate `intermediate_patches` of a few blocks before the head.
- **No training at all**: zero-shot segmentation from text prompts, see the
  "Using a pretrained TIPS model" guide.
"""

print("Done: segmentation_head_on_frozen_tips")
