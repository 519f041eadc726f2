"""
Title: Pretraining TIPS
Author: keras_tips contributors
Date created: 2026/11/29
Last modified: 2026/11/29
Description: The TIPS objective (two-CLS contrastive learning, DINO self-distillation, iBOT masked image modelling, EMA teacher), the data pipeline, a tiny `fit` run, recipes, checkpoints, resuming and exporting the student.
Accelerator: None
"""

"""
## Introduction

The official TIPS release ships inference code only. keras_tips implements
the whole pretraining objective as a Keras model, `TIPSPretrainer`, whose
`fit` trains the image tower, the text tower and both temperatures on
image-caption pairs. This guide

1. explains the objective term by term;
2. builds the input pipeline and shows the batch it produces;
3. trains a tiny TIPS for a few dozen steps with `TIPSPretrainer.fit` on the
   procedural shapes dataset that ships with keras_tips;
4. exports the student as a `TIPSModel` preset;
5. runs the same thing as a **recipe** (`keras-tips pretrain`), with atomic
   checkpoints, resuming after an interruption, and the exported preset.

Everything runs on a laptop CPU in about a minute: the model is tiny and
the training short, so the result is far from a useful model. The same code
trains a ViT-B/14 at paper scale (`recipes/tips_b14_webli.py`) on
accelerators.
"""

"""
## The TIPS objective

Each training example is an image with two captions: a noisy **web**
caption (alt-text) and a rich **synthetic** caption (from a captioning
model; in the paper, PaliGemma). The image tower outputs two CLS tokens and
the patch tokens. The loss of a batch is

```
L = ½ (L_web + L_synthetic) + α · L_distill + β · L_mask      (α = 1, β = 2)
```

**Contrastive terms.** `L_web` is the symmetric InfoNCE (CLIP) loss between
the L2-normalised CLS1 embeddings and the web-caption embeddings of the
batch; `L_synthetic` the same between CLS2 and the synthetic captions. Each
alignment has its own learned temperature (`temperature_web`,
`temperature_synthetic`), so the sharp, specific synthetic captions and the
loose web captions can settle at different scales. Both captions go through
the same text tower. A caption that is missing or unusable (`has_web` /
`has_synthetic` False) is neither an anchor nor a negative.

**Self-distillation (DINO), weight α.** A *teacher* image tower, an
exponential moving average (EMA) of the student, sees the global crop; the
student sees several small *local* crops of the same image. A projection
head maps each CLS1 to logits over K prototypes; the student's softmax
(temperature 0.1) on every local crop must match the teacher's sharper
softmax (temperature warming up from 0.04 to 0.07) on the global crop. This
teaches local-to-global correspondence, which is what makes the patch
features spatially aware.

**Masked image modelling (iBOT), weight β.** The student's global crop has a
random subset of its patches replaced by a learned mask token; for every
masked patch, a second head's prediction must match the teacher's
distribution for the same, unmasked patch. The contrastive loss sees the
student's *unmasked* global crop by default, so that a caption never names
an object the student cannot see; `contrastive_view="masked"` reuses the
masked pass instead, which saves one student forward pass per step.

**Avoiding collapse.** The teacher's targets are *centred*: an EMA of the
mean teacher logits is subtracted before the softmax (`centering=
"centering"`), or they are balanced across prototypes with a few
Sinkhorn-Knopp iterations (`centering="sinkhorn_knopp"`, as in DINOv2).

**The EMA teacher.** After each optimizer step,
`teacher <- m · teacher + (1 - m) · student`, with the momentum m following
a cosine schedule from 0.994 to 1.0 over the run. The teacher is never
touched by the optimizer; it is part of the model's state (saved with the
checkpoints), and only the student is exported at the end.

An optional KoLeo regulariser on CLS1 (`koleo_weight`, off by default)
spreads the image embeddings apart, as in DINOv2.

The iBOT heads run only on the masked tokens, gathered to a static count
per image (`max_masked_patches`, which a recipe derives from its mask
ratio), so the (tokens x prototypes) logits are never computed for the
visible patches; they are float32 even under mixed precision.

**TIPSv2.** Two settings turn the objective into TIPSv2's:
`mask_loss_tokens="all"` (iBOT++: the patch loss also covers the visible
tokens, each weighing `visible_token_weight` against a masked one) and
`teacher="heads_only"` (no teacher image tower: the student's tower under
stop-gradient gives the targets, and only the projection heads are moving
averages). `recipes/tips_v2_b14.py` uses both.

Setting `use_synthetic_captions=False`, `distill_weight=0` or
`mask_weight=0` switches a term off, which is how the paper's ablation
(CLIP, + synthetic captions, + self-distillation, + masking) is run
(`keras-tips ablation`).

## Setup
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import dataclasses
import json
import shutil
import tempfile

import keras
import numpy as np

import keras_tips
from keras_tips.data import PretrainingPipeline
from keras_tips.data import ShapesDataset
from keras_tips.data.vocabulary import shapes_vocabulary
from keras_tips.training.checkpoint import latest_checkpoint
from keras_tips.training.loop import pretrain
from keras_tips.training.loop import read_history
from keras_tips.training.optimizers import build_optimizer
from keras_tips.training.pretrainer import TIPSPretrainer
from keras_tips.training.recipe import load_recipe

OUTPUT_DIR = os.environ.get("KERAS_TIPS_GUIDE_OUTPUT") or tempfile.mkdtemp(
    prefix="keras_tips_guide_"
)
OUTPUT_DIR = os.path.join(OUTPUT_DIR, "pretraining_tips")
if os.path.exists(OUTPUT_DIR):
    shutil.rmtree(OUTPUT_DIR)
os.makedirs(OUTPUT_DIR)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_SHAPES = os.path.join(REPO_ROOT, "recipes", "tiny_shapes.py")
keras.utils.set_random_seed(0)
print("Backend:", keras.backend.backend())

"""
Every setting in this guide comes from the demo recipe,
`recipes/tiny_shapes.py` (a table of hyper-parameters; more on recipes
below), made smaller still so that the guide runs in about a minute. A
recipe is loaded with a list of `key=value` overrides:
"""

SMALLER = [
    "data.num_examples=512",
    "data.pipeline.batch_size=16",
    "model.vision.num_layers=2",
    "model.vision.hidden_dim=64",
    "model.vision.num_heads=4",
    "model.vision.intermediate_dim=256",
    "model.text.hidden_dim=64",
    "model.text.num_heads=4",
    "model.text.intermediate_dim=256",
    "objective.num_prototypes=256",
    "objective.head_hidden_dim=128",
    "objective.head_bottleneck_dim=32",
]
recipe = load_recipe(
    TINY_SHAPES,
    SMALLER
    + [
        "train.total_steps=30",
        "train.steps_per_checkpoint=10",
        "optimizer.warmup_steps=5",
        "objective.teacher_temperature_warmup_steps=10",
    ],
)
print("image size:", recipe.data.image_size, "| tokens per caption:", recipe.data.sequence_length)

"""
## Data

### Image-caption pairs

A real run reads millions of image-caption records: a JSONL index of an
image folder (`JsonlImageTextSource`) or ArrayRecord shards
(`ArrayRecordImageTextSource`); both give records with the image and the
`caption` (web) and `synthetic_caption` fields. Here we use the embedded
**shapes** dataset: scenes of coloured shapes, generated on the fly, whose
web caption is short and sometimes wrong (like alt-text) and whose synthetic
caption describes every object, its colour, size and position.
"""

data = recipe.data
dataset = ShapesDataset(
    "train", data.num_examples, data.image_size, seed=data.seed,
    max_objects=data.max_objects,
)
example = dataset[3]
print("image:", example["image"].shape, example["image"].dtype)
print("web caption:      ", example["web_caption"])
print("synthetic caption:", example["synthetic_caption"])

"""
### Tokenizer

The released TIPS tokenizer has 32,000 SentencePiece pieces. A model
trained from scratch on shapes needs only the few dozen words its captions
use; `shapes_vocabulary` trains such a SentencePiece model with the TIPS
conventions (pad id 0, no BOS/EOS, lower case).
"""

tokenizer = keras_tips.TIPSTokenizer(
    proto=shapes_vocabulary(os.path.join(OUTPUT_DIR, "vocabulary.spm"), seed=data.seed),
    sequence_length=data.sequence_length,
)
print("vocabulary size:", tokenizer.vocabulary_size())

"""
### The pipeline

`PretrainingPipeline` is a [grain](https://github.com/google/grain) pipeline:
it shuffles the records, decodes each image, cuts the global crop and the
local crops, draws the patch mask, batches, and tokenizes the captions. Bad
records (undecodable images, empty captions) are counted and skipped. With
`worker_count > 0` the per-example work runs in worker processes.

Its settings are a `PipelineConfig`, the recipe's `data.pipeline`. The
global crop is `data.image_size` and the mask grid follows from the model's
patch size; both are filled in from the recipe, as is the seed
(`train.seed`). The shapes captions name colours and positions ("a red
circle in the top left"), so the recipe's global crop is the whole scene,
unflipped and with true colours; only the local crops (used by
self-distillation alone) are cut and blurred. Half of the images have half
of their patches masked.
"""

pipeline_config = recipe.data.pipeline
print(
    f"global crop {pipeline_config.global_image_size} px "
    f"({pipeline_config.patch_grid_size} x {pipeline_config.patch_grid_size} patches), "
    f"{pipeline_config.local_crop_count} local crops of {pipeline_config.local_image_size} px"
)
print("mask:", pipeline_config.mask)
pipeline = PretrainingPipeline(
    dataset.image_text_source(), pipeline_config, tokenizer.tokenize_numpy
)
batch = next(pipeline)
for key, value in batch.items():
    print(f"{key:24s} {str(value.dtype):8s} {value.shape}")

"""
This is the **batch contract** of `TIPSPretrainer` (any source of dicts
like these works, e.g. your own `tf.data` or NumPy generator):

| key | dtype, shape | meaning |
| --- | --- | --- |
| `global_images` | float32 (B, G, G, 3) | global crop in [0, 1] |
| `contrastive_images` | float32 (B, G, G, 3) | crop paired with the captions (optional: without it, the contrastive loss uses the global crop) |
| `local_images` | float32 (B, L, S, S, 3) | L local crops (optional) |
| `patch_mask` | bool (B, (G/14)²) | True = masked patch, row-major |
| `web_token_ids`, `web_padding_mask` | int32 / bool (B, T) | web caption |
| `synthetic_token_ids`, `synthetic_padding_mask` | int32 / bool (B, T) | synthetic caption |
| `has_web`, `has_synthetic` | bool (B,) | False where a caption is unusable |

## A tiny TIPS

The student is a `TIPSBackbone`: a ViT/14 image tower with two CLS tokens
and a text tower, built from the recipe's `model` section (the arguments of
`TIPSVisionEncoder` and `TIPSTextEncoder`). The position grid (56 // 14 = 4)
and the text tower's length were filled in from `data.image_size` and
`data.sequence_length`; the vocabulary size comes from the tokenizer.
"""

print("vision:", recipe.model.vision)
print("text:", recipe.model.text)
backbone = keras_tips.TIPSBackbone(
    vision_encoder=keras_tips.TIPSVisionEncoder(
        **recipe.model.vision, name="vision_encoder"
    ),
    text_encoder=keras_tips.TIPSTextEncoder(
        vocabulary_size=tokenizer.vocabulary_size(),
        **recipe.model.text,
        name="text_encoder",
    ),
    temperature=recipe.model.temperature,
)

"""
`TIPSPretrainer` wraps the student, makes the EMA teacher (a copy of the
image tower and of the heads) and computes every loss term in its forward
pass. The paper-scale heads have 65,536 prototypes and a 2,048-wide MLP; a
few hundred prototypes are plenty here.
"""

objective = recipe.objective
TOTAL_STEPS = recipe.train.total_steps
pretrainer = TIPSPretrainer(
    backbone,
    total_steps=TOTAL_STEPS,  # sets the teacher momentum schedule
    **dataclasses.asdict(objective),
)
print(
    f"α = {objective.distill_weight}, β = {objective.mask_weight}, "
    f"{objective.num_prototypes} prototypes, teacher momentum "
    f"{objective.teacher_momentum}, teacher temperature "
    f"{objective.teacher_temperature} warmed up over "
    f"{objective.teacher_temperature_warmup_steps} steps, targets by "
    f"{objective.centering!r}"
)

"""
The optimizer is AdamW with a linear warm-up and a cosine decay of the
learning rate, no weight decay on norms, biases, tokens, position
embeddings and temperatures, and global gradient clipping
(`build_optimizer`; `layer_decay` adds layer-wise learning-rate decay).
"""

settings = recipe.optimizer  # its total_steps is train.total_steps
print(
    f"peak learning rate {settings.peak_learning_rate} after "
    f"{settings.warmup_steps} warm-up steps, cosine to "
    f"{settings.final_learning_rate} at step {settings.total_steps}; weight "
    f"decay {settings.weight_decay}; gradient norm clipped at "
    f"{settings.global_clipnorm}"
)
optimizer = build_optimizer(settings)
pretrainer.compile(optimizer=optimizer)

"""
### `fit`

`fit` takes any iterator of batches. Each of the 3 "epochs" below is 10
steps; the logs are the means of every loss term, both contrastive
accuracies, both temperatures and the schedules.
"""

INTERVAL = recipe.train.steps_per_checkpoint
history = pretrainer.fit(
    ((batch,) for batch in pipeline),
    steps_per_epoch=INTERVAL,
    epochs=TOTAL_STEPS // INTERVAL,
    shuffle=False,  # the pipeline shuffles
    verbose=0,
)
pipeline.close()
logs = history.history
for epoch in range(len(logs["loss"])):
    print(
        f"epoch {epoch + 1}: loss {logs['loss'][epoch]:.3f} = "
        f"½({logs['contrastive_web'][epoch]:.3f} + "
        f"{logs['contrastive_synthetic'][epoch]:.3f}) + "
        f"1·{logs['distill'][epoch]:.3f} + 2·{logs['mask'][epoch]:.3f}"
    )
print(
    f"teacher momentum {logs['teacher_momentum'][-1]:.4f}, "
    f"teacher temperature {logs['teacher_temperature'][-1]:.3f}, "
    f"temperatures web {logs['temperature_web'][-1]:.4f} / "
    f"synthetic {logs['temperature_synthetic'][-1]:.4f}"
)
print("steps trained:", int(keras.ops.convert_to_numpy(pretrainer.step_counter)))

"""
The total is exactly the weighted sum of the terms:
"""

reconstructed = (
    0.5 * (np.array(logs["contrastive_web"]) + np.array(logs["contrastive_synthetic"]))
    + 1.0 * np.array(logs["distill"])
    + 2.0 * np.array(logs["mask"])
)
error = np.abs(reconstructed - np.array(logs["loss"])).max()
print("max |loss - weighted sum|:", float(error))

"""
What to watch in a real run: the contrastive losses fall well below
`log(B)` (here `log(16) = 2.77`, their value at chance) and the accuracies
rise. The DINO and iBOT losses are cross-entropies over K prototypes: here
they first *rise* towards `log(K)` (`log(256) = 5.55`), because the teacher
temperature warms up from 0.04 to 0.07 over the first 10 steps and its
targets flatten; in a long run they then fall as the student learns to
match the teacher. They must not drop to 0 with the teacher predicting one
prototype for everything: that is collapse, which centring or Sinkhorn-Knopp
prevents. Thirty steps on a tiny model only show the very start of this.

### Exporting the student

The teacher and heads are training machinery; the result of pretraining is
the student backbone. `export_student` saves it with a preprocessor as a
`TIPSModel` preset, which loads like any converted checkpoint:
"""

preset_dir = os.path.join(OUTPUT_DIR, "tiny_tips_preset")
size = recipe.data.image_size
pretrainer.export_student(
    preset_dir,
    keras_tips.TIPSPreprocessor(
        tokenizer, keras_tips.TIPSImageConverter(image_size=(size, size))
    ),
)
model = keras_tips.TIPSModel.from_preset(preset_dir)
scene = ShapesDataset("test", num_examples=1, image_size=size)[0]
probabilities = model.classify(
    scene["image"][None].astype("float32") / 255.0,
    list(ShapesDataset.class_names),
    templates=["a {}.", "a picture of a {}."],
)[0]
print("scene:", scene["synthetic_caption"])
names = ShapesDataset.class_names
print("zero-shot:", {n: round(float(p), 2) for n, p in zip(names, probabilities)})

"""
(After 30 steps the prediction is close to a guess. The `tiny_shapes`
recipe trains for 2,400 steps; `keras-tips demo` trains it and reports how
far above chance it gets.)

## Recipes and `keras-tips pretrain`

For real runs, every hyper-parameter lives in a **recipe**: a Python file
whose `recipe()` returns a `PretrainRecipe` dataclass with sections
`model`, `objective` (the `TIPSPretrainer` arguments), `optimizer`, `data`
(source, tokenizer and `PipelineConfig`), `train` (steps, checkpoint
interval, seed, distribution) and `evaluation`. Two ship in `recipes/`:
`tiny_shapes.py` (the demo above, at a sensible length) and
`tips_b14_webli.py` (ViT-B/14 at paper scale). From the shell:

```bash
keras-tips pretrain --recipe recipes/tiny_shapes.py --output runs/tiny_shapes \\
    --set train.total_steps=200 --set optimizer.peak_learning_rate=1e-3
```

Each number is set once. The global crop, the position grid and the
evaluation follow `data.image_size`; the text tower's length follows
`data.sequence_length`; the schedules of the optimizer and of the teacher
follow `train.total_steps`. `--set data.image_size=112` therefore moves all
of them, and an override that contradicts its source is refused before
anything is built:
"""

bigger = load_recipe(TINY_SHAPES, ["data.image_size=112"])
print(
    "at 112 px: crop", bigger.data.pipeline.global_image_size,
    "| position grid", bigger.model.vision["position_grid_size"],
    "| evaluation", bigger.evaluation.image_size,
)
try:
    load_recipe(TINY_SHAPES, ["optimizer.total_steps=500"])
except ValueError as error:
    print("refused:", error)

"""
A run directory receives `recipe.json` (the resolved recipe),
`checkpoints/` (a folder per saved step, the last three kept, and each
process's data position in `data_process_<i>/`), `history.jsonl` (the
logged metrics of every checkpoint interval) and, at the end, the exported
student in `preset/`.

The same from Python, with this guide's smaller sizes and two checkpoint
intervals of 8 steps:
"""

overrides = SMALLER + [
    "train.total_steps=16",
    "train.steps_per_checkpoint=8",
    "optimizer.warmup_steps=4",
    "objective.teacher_temperature_warmup_steps=8",
]
recipe = load_recipe(TINY_SHAPES, overrides)
run_dir = os.path.join(OUTPUT_DIR, "run")
pretrain(recipe, run_dir, verbose=0)
print("run directory:", sorted(os.listdir(run_dir)))
print("checkpoints:", sorted(os.listdir(os.path.join(run_dir, "checkpoints"))))
uninterrupted = read_history(run_dir)
for record in uninterrupted:
    print(f"step {record['step']:3d}: loss {record['loss']:.4f}")

"""
### Checkpoints and resuming

Every `steps_per_checkpoint` steps the loop writes a checkpoint: the
weights of student, teacher and heads, the centres, the step counter and
the optimizer state (`model.weights.h5`), and `state.json` with the step
and the **position of the data iterator**. It is written to a staging
folder, moved into place, and only then does the small `latest` file
(replaced atomically) point at it, so a kill at any moment leaves the
previous complete checkpoint in charge. A non-finite loss stops the run
before anything is saved.
"""

latest = latest_checkpoint(os.path.join(run_dir, "checkpoints"))
print("latest:", os.path.relpath(latest, run_dir), sorted(os.listdir(latest)))
with open(os.path.join(latest, "state.json")) as f:
    state = json.load(f)
print("state.json: step", state["step"], "| extra:", sorted(state["extra"]))

"""
Running the same command again **resumes**: it restores the latest
checkpoint and the data iterator, and continues with the first batch that
was not trained on. To see it without waiting for a real crash, we put the
run directory back in the state that a kill during steps 9-16 leaves behind
(the step-8 checkpoint complete and `latest` naming it; no step-16
checkpoint, no exported preset), then run the same recipe again:
"""

checkpoints = os.path.join(run_dir, "checkpoints")
shutil.rmtree(os.path.join(checkpoints, "step_00000016"))
with open(os.path.join(checkpoints, "latest"), "w") as f:
    f.write("step_00000008")
shutil.rmtree(os.path.join(run_dir, "preset"))
with open(os.path.join(run_dir, "history.jsonl"), "w") as f:
    f.write(json.dumps(uninterrupted[0]) + "\n")

pretrain(recipe, run_dir, verbose=0)
resumed = read_history(run_dir)
for record in resumed:
    print(f"step {record['step']:3d}: loss {record['loss']:.4f}")
print(
    "resumed run ends like the uninterrupted one:",
    bool(np.isclose(resumed[-1]["loss"], uninterrupted[-1]["loss"], rtol=1e-4)),
)

"""
Resuming continues the *same* run: the learning-rate and momentum schedules
are functions of the step, and the data iterator picks up where the
checkpoint left it. (Bit-for-bit equality is not guaranteed across machines
or library versions; on one machine the two runs agree to float round-off.)

To make a run longer, raise `train.total_steps`; note that this stretches
the cosine schedules of the remaining steps.

### The exported student

At the end of a run the student is exported to `OUTPUT/preset`, ready for
`TIPSModel.from_preset`, `keras-tips evaluate --shapes` (the shapes benchmark:
zero-shot, retrieval, k-NN, probes, zero-shot segmentation) and
`keras-tips show` (pictures):
"""

student = keras_tips.TIPSModel.from_preset(os.path.join(run_dir, "preset"))
print(
    "exported student:",
    student.backbone.vision_encoder.count_params(), "image parameters,",
    student.backbone.text_encoder.count_params(), "text parameters",
)

"""
```bash
keras-tips evaluate --preset runs/tiny_shapes/preset --shapes
keras-tips show --preset runs/tiny_shapes/preset --output pictures \\
    --history runs/tiny_shapes/history.jsonl
```

`keras-tips demo` runs the whole `tiny_shapes` recipe, evaluates it and
draws the pictures in one go; `keras-tips ablation` trains the four
ablation variants of a recipe and prints their results side by side.

## Going further

- **Scale**: `recipes/tips_b14_webli.py` has the paper's hyper-parameters
  (ViT-B/14, 65,536 prototypes, 6 local crops of 98 px, block masking of
  75 % of the patches, mixed bfloat16).
- **Distribution**: set `train.distribution` to `"data_parallel"` or
  `"model_parallel:N"`; see the "Scaling with keras.distribution" guide.
- **Fine-tuning a released model**: build the `TIPSPretrainer` on
  `TIPSModel.from_preset(name).backbone` instead of a fresh backbone.
"""

print("Done: pretraining_tips")
