"""
Title: DPT heads on a frozen TIPS encoder
Author: keras_tips contributors
Date created: 2026/11/30
Last modified: 2026/11/30
Description: Train two small DPT decoders (segmentation and depth) with `model.fit` on the frozen blocks of a TIPS image tower, show their maps, and use them like the released TIPSv2 heads.
Accelerator: None
"""

"""
## Introduction

TIPSv2 releases DPT decoders (Ranftl et al., "Vision Transformers for Dense
Prediction") that turn the features of four blocks of a frozen image tower
into dense maps: ADE20K segmentation, NYU depth and surface normals. In
keras_tips such a decoder is a `keras_tips.TIPSDPTHead`, and the released
ones load by name:

```python
model = keras_tips.TIPSModel.from_preset("tips_v2_oss_b14")
head = keras_tips.TIPSDPTHead.from_preset("tips_v2_b14_depth_dpt")
depth = model.predict_dense(images, head)  # (B, 448, 448, 1), metres
```

A `TIPSDPTHead` is also an ordinary Keras model that trains with `fit`.
This guide

1. pretrains a tiny TIPS for a few dozen steps (as in the "Pretraining
   TIPS" guide) to have an encoder offline;
2. freezes its image tower and feeds the outputs of its four blocks to two
   small DPT heads, one for semantic segmentation and one for depth, in a
   single functional Keras model;
3. trains both heads with one `fit` on the masks and depth maps of the
   procedural shapes dataset;
4. scores them against trivial baselines and draws their maps with
   `keras_tips.visualize` (class maps with a legend, depth with a scale
   bar);
5. saves each head as a preset that `TIPSModel.predict_dense` and
   `keras-tips predict --head` use like the released ones.

It runs on a laptop CPU in a few minutes, and the result is modest: the
encoder has trained for seconds on a 4 x 4 patch grid, and a DPT decoder
needs far more than a few hundred steps. The heads end up only somewhat
better than predicting the background and the mean depth everywhere; with
a released encoder at 448 x 448 px (32 x 32 patches) and a longer run, the
same code learns real maps.
"""

"""
## Setup

`KERAS_TIPS_GUIDE_QUICK=1` shrinks the run (fewer pretraining steps and
examples) for a smoke test.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import shutil
import tempfile

import keras
import numpy as np

import keras_tips
from keras_tips.data import ShapesDataset
from keras_tips.evaluation import depth_metrics
from keras_tips.evaluation import mean_iou
from keras_tips.training.loop import pretrain
from keras_tips.training.recipe import load_recipe
from keras_tips.visualize import depth_image
from keras_tips.visualize import image_grid
from keras_tips.visualize import label_map_image

OUTPUT_DIR = os.environ.get("KERAS_TIPS_GUIDE_OUTPUT") or tempfile.mkdtemp(
    prefix="keras_tips_guide_"
)
OUTPUT_DIR = os.path.join(OUTPUT_DIR, "dpt_heads_on_frozen_tips")
if os.path.exists(OUTPUT_DIR):
    shutil.rmtree(OUTPUT_DIR)
os.makedirs(OUTPUT_DIR)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_SHAPES = os.path.join(REPO_ROOT, "recipes", "tiny_shapes.py")
QUICK = os.environ.get("KERAS_TIPS_GUIDE_QUICK") == "1"
PRETRAINING_STEPS = 10 if QUICK else 40
NUM_TRAIN, NUM_TEST = (192, 48) if QUICK else (480, 96)
EPOCHS = 12
keras.utils.set_random_seed(0)
print("Backend:", keras.backend.backend(), "| quick run:", QUICK)

"""
## An encoder

The demo recipe `recipes/tiny_shapes.py`, made smaller (a 64-wide image
tower of four blocks) and short, pretrained on the shapes dataset at
56 x 56 px. `pretrain` writes the exported student to `run/preset`.
"""

recipe = load_recipe(
    TINY_SHAPES,
    [
        "data.num_examples=512",
        "data.pipeline.batch_size=16",
        "model.vision.num_layers=4",
        "model.vision.hidden_dim=64",
        "model.vision.num_heads=4",
        "model.vision.intermediate_dim=256",
        "model.text.hidden_dim=64",
        "model.text.num_heads=4",
        "model.text.intermediate_dim=256",
        "objective.num_prototypes=256",
        "objective.head_hidden_dim=128",
        "objective.head_bottleneck_dim=32",
        f"train.total_steps={PRETRAINING_STEPS}",
        f"train.steps_per_checkpoint={PRETRAINING_STEPS}",
        "optimizer.warmup_steps=5",
        f"objective.teacher_temperature_warmup_steps={PRETRAINING_STEPS}",
    ],
)
run_dir = os.path.join(OUTPUT_DIR, "run")
pretrain(recipe, run_dir, verbose=0)
tips = keras_tips.TIPSModel.from_preset(os.path.join(run_dir, "preset"))
tower = tips.backbone.vision_encoder
# A copy of the image tower for the new model. Keras (3.15) checks that a
# functional model is connected using the outputs of each layer's *first*
# call; the backbone's call of its tower returned no intermediate blocks,
# so the DPT features taken from it would look unconnected.
encoder = keras_tips.TIPSVisionEncoder.from_config(tower.get_config())
encoder.build()
encoder.set_weights(tower.get_weights())
print(
    f"encoder: width {encoder.hidden_dim}, {encoder.num_layers} blocks, "
    f"patch size {encoder.patch_size}, pretrained for {PRETRAINING_STEPS} steps"
)

"""
## The data

`ShapesDataset` scenes come with a `class_mask` (0 for background, `c` for
`ShapesDataset.class_names[c - 1]`) and a `depth` map: 1.0 for the
background, nearer shapes smaller (between 0.15 and 0.9). The heads see
the scenes at 56 x 56 px, the resolution the encoder was trained at (a
4 x 4 patch grid).
"""

IMAGE_SIZE = recipe.data.image_size
CLASS_NAMES = ["background"] + list(ShapesDataset.class_names)
NUM_CLASSES = len(CLASS_NAMES)


def load(split, num_examples):
    dataset = ShapesDataset(split, num_examples, IMAGE_SIZE, seed=0)
    examples = [dataset[i] for i in range(num_examples)]
    images = np.stack([e["image"] for e in examples])  # uint8 (N, H, W, 3)
    masks = np.stack([e["class_mask"] for e in examples])  # int32 (N, H, W)
    depths = np.stack([e["depth"] for e in examples])[..., None]  # (N, H, W, 1)
    return images, masks, depths


train_images, train_masks, train_depths = load("train", NUM_TRAIN)
test_images, test_masks, test_depths = load("test", NUM_TEST)
print("train:", train_images.shape, train_masks.shape, train_depths.shape)
print(f"depth range: {train_depths.min():.2f} to {train_depths.max():.2f}")

"""
## The model

A DPT head takes four `(cls, patch_map)` pairs, one per level, from the
blocks named by its `encoder_layers`, after the image tower's final
LayerNorm: that is what the encoder returns with
`return_intermediates=encoder_layers` (`"intermediate_cls_1"` (B, 4, D)
and `"intermediate_patches"` (B, 4, N, D)). With `image_size`, the head
resizes its map (16 * ceil(g / 2) pixels per side of a g-patch side)
bilinearly to the input's size.

The released heads are 256 wide; here `channels=32` keeps them small. The
depth head reads its output as a distribution over depth bins
(`num_outputs` bins from `min_depth` to `max_depth`) and returns the
expected depth, as the released NYU head does between 0.001 and 10 m.

**Freezing.** `encoder.trainable = False` moves the tower's weights to
`non_trainable_weights`, and `training=False` keeps it in inference mode;
both heads share its forward pass.
"""

ENCODER_LAYERS = tuple(range(encoder.num_layers))  # all four blocks
segmentation_head = keras_tips.TIPSDPTHead(
    "segmentation",
    input_embed_dim=encoder.hidden_dim,
    encoder_layers=ENCODER_LAYERS,
    num_outputs=NUM_CLASSES,
    channels=32,
    name="segmentation_head",
)
depth_head = keras_tips.TIPSDPTHead(
    "depth",
    input_embed_dim=encoder.hidden_dim,
    encoder_layers=ENCODER_LAYERS,
    num_outputs=16,
    channels=32,
    min_depth=0.01,
    max_depth=1.0,
    name="depth_head",
)

encoder.trainable = False
grid = IMAGE_SIZE // encoder.patch_size
images = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype="uint8", name="images")
x = keras.layers.Rescaling(1.0 / 255.0, name="to_unit_range")(images)
blocks = encoder(x, training=False, return_intermediates=ENCODER_LAYERS)
features = [
    (
        blocks["intermediate_cls_1"][:, level],
        keras.layers.Reshape((grid, grid, encoder.hidden_dim), name=f"patch_grid_{level}")(
            blocks["intermediate_patches"][:, level]
        ),
    )
    for level in range(len(ENCODER_LAYERS))
]
outputs = {
    "segmentation": segmentation_head(features, image_size=(IMAGE_SIZE, IMAGE_SIZE)),
    "depth": depth_head(features, image_size=(IMAGE_SIZE, IMAGE_SIZE)),
}
dense_model = keras.Model(images, outputs, name="tips_dense_model")

for key, output in outputs.items():
    print(f"{key:12s} output: {output.shape}")
trainable = sum(int(np.prod(w.shape)) for w in dense_model.trainable_weights)
frozen = sum(int(np.prod(w.shape)) for w in dense_model.non_trainable_weights)
print(f"trainable parameters: {trainable:,} (two heads); frozen: {frozen:,} (TIPS encoder)")

"""
## Training the heads

One `fit` trains both: per-pixel cross-entropy for the class logits and the
squared error for the depth (the absolute error's optimum, the median, is
the background's depth almost everywhere). Background covers most pixels, so each
pixel's cross-entropy is weighted by the inverse square root of its
class's frequency (a per-pixel `sample_weight` for that output only).
"""

share = np.bincount(train_masks.ravel(), minlength=NUM_CLASSES) / train_masks.size
class_weights = 1.0 / np.sqrt(np.maximum(share, 1e-6))
class_weights /= class_weights[train_masks].mean()

dense_model.compile(
    optimizer=keras.optimizers.AdamW(learning_rate=3e-3, weight_decay=1e-4),
    loss={
        "segmentation": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        "depth": keras.losses.MeanSquaredError(),
    },
)
encoder_before = [w.copy() for w in encoder.get_weights()]
history = dense_model.fit(
    train_images,
    {"segmentation": train_masks, "depth": train_depths},
    sample_weight={
        "segmentation": class_weights[train_masks],
        "depth": np.ones(train_depths.shape[:3], "float32"),
    },
    batch_size=8,
    epochs=EPOCHS,
    verbose=0,
)
logs = history.history
for epoch in (0, EPOCHS // 2 - 1, EPOCHS - 1):
    print(
        f"epoch {epoch + 1:2d}: segmentation loss {logs['segmentation_loss'][epoch]:.3f}, "
        f"depth loss (mean squared error) {logs['depth_loss'][epoch]:.4f}"
    )
unchanged = all(
    np.array_equal(a, b) for a, b in zip(encoder_before, encoder.get_weights())
)
print("encoder weights unchanged by training:", unchanged)

"""
The encoder's output never changes here, so for larger data it is cheaper
to run it once over the dataset and train the heads on the stored blocks
(a `keras.Model` taking the four pairs as inputs); keeping it inside, as
here, gives one model from pixels to maps.

## Evaluation

Each head against what it would score without looking at the image:
predicting background everywhere (mean IoU over the classes present), and
predicting the training set's mean depth everywhere.
"""

predictions = dense_model.predict(test_images, batch_size=32, verbose=0)
predicted_classes = np.argmax(predictions["segmentation"], axis=-1)
miou = mean_iou(predicted_classes, test_masks, num_classes=NUM_CLASSES)
background_miou = mean_iou(np.zeros_like(test_masks), test_masks, num_classes=NUM_CLASSES)
print(f"segmentation mIoU: {miou:.3f} (background everywhere: {background_miou:.3f})")

predicted_depths = predictions["depth"]
scores = depth_metrics(predicted_depths, test_depths)
mean_depth = np.full_like(test_depths, train_depths.mean())
baseline = depth_metrics(mean_depth, test_depths)
print(f"depth RMSE: {scores['rmse']:.3f} (mean depth everywhere: {baseline['rmse']:.3f})")
# The same on the scenes the heads were trained on: how well `fit` fitted.
fitted = dense_model.predict(train_images, batch_size=32, verbose=0)["depth"]
fitted_rmse = depth_metrics(fitted, train_depths)["rmse"]
train_baseline = depth_metrics(np.full_like(train_depths, train_depths.mean()), train_depths)
print(
    f"depth RMSE on the training scenes: {fitted_rmse:.3f} "
    f"(mean depth everywhere: {train_baseline['rmse']:.3f})"
)
print(
    f"depth abs-rel: {scores['abs_rel']:.3f} (mean depth everywhere: "
    f"{baseline['abs_rel']:.3f})"
)

"""
## Pictures

`label_map_image` colours a class map and lists the classes it shows, the
largest first; `depth_image` colour-maps depth (near blue, far red) with a
scale bar. One value range for every depth picture makes them comparable.
Each row: the scene, the true classes, the predicted classes, the true
depth, the predicted depth.
"""

depth_range = (0.0, 1.0)
rows = []
for i in range(4):
    rows += [
        test_images[i],
        label_map_image(test_masks[i], class_names=CLASS_NAMES),
        label_map_image(predicted_classes[i], class_names=CLASS_NAMES),
        depth_image(test_depths[i], value_range=depth_range),
        depth_image(predicted_depths[i], value_range=depth_range),
    ]
path = os.path.join(OUTPUT_DIR, "dense_predictions.png")
image_grid(
    rows,
    columns=5,
    titles=["image", "true classes", "predicted", "true depth", "predicted"] * 4,
    path=path,
)
print("Pictures written to", path)

"""
After this short run on weak features, the maps are mostly a prior:
background almost everywhere, with here and there the largest shape, and a
depth map that is nearer in the middle of the picture, where shapes tend to
be. The scores above measure how much that gains over the trivial
baselines; more pretraining, larger images and a longer run of the heads
are what make the maps follow the shapes.
"""

"""
## The heads as presets

`save_to_preset` writes a head as a folder (`config.json`, `metadata.json`,
`model.weights.h5`) that `TIPSDPTHead.from_preset` loads, as it loads the
released heads. `TIPSModel.predict_dense` then runs the encoder and a head
on images (floats in [0, 1] or `uint8`) and returns the map at the images'
size: the same as the training model's output.
"""

head_dir = os.path.join(OUTPUT_DIR, "depth_head_preset")
depth_head.save_to_preset(head_dir)
reloaded_head = keras_tips.TIPSDPTHead.from_preset(head_dir)
dense = tips.predict_dense(test_images[:8], reloaded_head)
difference = np.abs(dense - predicted_depths[:8]).max()
print(f"predict_dense with the reloaded head: {dense.shape}, max difference {difference:.1e}")

"""
From the shell, `keras-tips predict` does the same for a folder of images,
writing a picture and a `.npy` map per image:

```bash
keras-tips predict --preset OUTPUT/run/preset --head OUTPUT/depth_head_preset \\
    --task depth --images scenes/ --output depth_maps/
```

With the released heads, leave out `--head`: `--preset tips_v2_oss_b14
--task segmentation` uses `tips_v2_b14_segmentation_dpt`.

## Variations

- **A linear head**: a `Conv2D(NUM_CLASSES, 1)` on `blocks["patches"]`
  reshaped to the patch grid, upsampled by the patch size (the paper's
  linear probe; see the "A segmentation head on a frozen TIPS encoder"
  guide).
- **Normals**: `TIPSDPTHead("normals", ...)` outputs raw 3-vectors;
  `keras_tips.normalize_normals` and `keras_tips.visualize.normals_image`
  turn them into unit vectors and pictures.
- **A released encoder**: the TIPSv2 heads read blocks (2, 5, 8, 11) of
  the ViT-B/14 at 448 x 448 px (`TIPS_DPT_PRESETS` lists every encoder's);
  the same model code trains heads of your own on its features.
"""

print("Done: dpt_heads_on_frozen_tips")
