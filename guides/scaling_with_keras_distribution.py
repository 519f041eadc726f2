"""
Title: Scaling TIPS pretraining with keras.distribution
Author: keras_tips contributors
Date created: 2026/11/29
Last modified: 2026/11/29
Description: Data and model parallelism for TIPSPretrainer with keras.distribution on JAX, why the contrastive loss sees the global batch, recipes, and multi-host data sharding.
Accelerator: None
"""

"""
## Introduction

TIPS is trained with large batches: its contrastive losses compare every
image with every caption of the batch, so more examples per batch means more
negatives. Keras 3's `keras.distribution` API spreads a model over many
accelerators without changing the model code:

- **`DataParallel`** replicates every weight on every device and splits the
  batch across them;
- **`ModelParallel`** arranges the devices in a 2-D mesh `(batch, model)`:
  the batch is split along the first axis and large weight matrices along
  the second, following a `LayoutMap` of variable-path patterns.

On JAX, Keras turns these into *shardings* of `jax.Array`s and compiles the
train step once for the whole mesh; XLA's SPMD partitioner inserts the
collectives (all-reduce, all-gather) where the computation needs them.
This guide covers both set-ups for `TIPSPretrainer`, shows why the
contrastive loss is computed on the **global** batch, how a recipe selects a
distribution, and how several hosts share the data.

**Running this guide.** It needs the JAX backend and at least two devices.
No accelerator is needed: XLA can split the host CPU into virtual devices,

```bash
XLA_FLAGS=--xla_force_host_platform_device_count=8 KERAS_BACKEND=jax \\
    python guides/scaling_with_keras_distribution.py
```

which is how the guide is tested. On a machine with several GPUs or a TPU,
run it without `XLA_FLAGS` to use the real devices.
"""

"""
## Setup
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import math

import keras
import numpy as np

from keras_tips.losses.contrastive import contrastive_loss
from keras_tips.training import distribution as tips_distribution
from keras_tips.training import loop
from keras_tips.training.recipe import load_recipe

backend = keras.backend.backend()
devices = keras.distribution.list_devices() if backend == "jax" else []
print(f"Backend: {backend}; devices: {len(devices)}")
if backend != "jax" or len(devices) < 2:
    print(
        "This guide shards a model over several devices with JAX and found "
        f"{len(devices)} usable device(s) on the {backend} backend. Run it "
        "with\n    XLA_FLAGS=--xla_force_host_platform_device_count=8 "
        "KERAS_BACKEND=jax python guides/scaling_with_keras_distribution.py\n"
        "to simulate 8 devices on the CPU."
    )
    raise SystemExit(0)
print(devices)

"""
## A tiny model and a few batches

We build the same tiny TIPS several times (unsharded, data parallel, model
parallel) from the same seed, and train each on the same two batches of the
shapes dataset, 16 examples each: 2 per device on 8 devices. Model, objective,
optimizer and data all come from the demo recipe, `recipes/tiny_shapes.py`,
made smaller with overrides, and are built by the same functions that
`keras-tips pretrain` uses.

The text tower's vocabulary is rounded up to a multiple of 8, so that the
embedding table splits evenly over any model axis of up to 8 devices (the
extra rows are never used). The real tokenizer has 32,000 pieces, which
splits evenly over 2, 4, 8, ... devices anyway.
"""

GLOBAL_BATCH = 16
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
recipe = load_recipe(
    os.path.join(REPO_ROOT, "recipes", "tiny_shapes.py"),
    [
        "data.num_examples=256",
        f"data.pipeline.batch_size={GLOBAL_BATCH}",
        "data.sequence_length=32",
        "model.vision.hidden_dim=64",
        "model.vision.num_layers=2",
        "model.vision.num_heads=4",
        "model.vision.intermediate_dim=256",
        "model.text.hidden_dim=64",
        "model.text.num_layers=1",
        "model.text.num_heads=4",
        "model.text.intermediate_dim=256",
        "objective.num_prototypes=128",
        "objective.head_hidden_dim=64",
        "objective.head_bottleneck_dim=32",
        "objective.head_num_layers=2",
        "objective.teacher_momentum=(0.9, 1.0)",
        "train.total_steps=10",
        "train.steps_per_checkpoint=10",
        "optimizer.warmup_steps=2",
    ],
)
tokenizer = loop.build_tokenizer(recipe)
VOCABULARY = 8 * math.ceil(tokenizer.vocabulary_size() / 8)

with loop.build_pipeline(recipe, tokenizer) as pipeline:
    batches = [next(pipeline), next(pipeline)]
IMAGE_SIZE = recipe.data.image_size


def build_pretrainer():
    keras.utils.set_random_seed(0)
    return loop.build_pretrainer(recipe, VOCABULARY)


TERMS = ("loss", "contrastive_web", "distill", "mask")


def train(pretrainer):
    """Two train steps; returns the logged loss terms of each."""
    logs = []
    for batch in batches:
        step = pretrainer.train_on_batch(batch, return_dict=True)
        logs.append({k: float(step[k]) for k in TERMS})
    return logs


def show(label, steps):
    for step, logs in enumerate(steps):
        terms = ", ".join(f"{k} {v:.5f}" for k, v in logs.items())
        print(f"{label} step {step + 1}: {terms}")


def compare(label, steps):
    for name in ("loss", "contrastive_web"):
        difference = max(abs(a[name] - b[name]) for a, b in zip(steps, reference))
        print(f"{label} vs unsharded, {name}: max difference {difference:.1e}")
        assert difference < 1e-3


"""
## The reference: one device
"""

reference = train(build_pretrainer())
show("unsharded", reference)

"""
## Data parallelism

`keras.distribution.DataParallel` (`keras_tips.training.distribution.
data_parallel()` returns one over all devices) makes a 1-D mesh of the
devices. Every variable created under it is replicated; every input batch is
split along its first axis:
"""

data_parallel = tips_distribution.data_parallel()
print("mesh:", data_parallel.device_mesh.shape, data_parallel.device_mesh.axis_names)
layout = data_parallel.get_data_layout((GLOBAL_BATCH, IMAGE_SIZE, IMAGE_SIZE, 3))
print("layout of global_images:", layout.axes)

"""
A distribution applies to the variables created and the steps run while it
is active: either globally with `keras.distribution.set_distribution(...)`,
or inside its `scope()`, as here (so that the three set-ups can share one
process) and as `keras-tips pretrain` does around a whole run.
"""

with data_parallel.scope():
    pretrainer = build_pretrainer()
    data_parallel_logs = train(pretrainer)
qkv = pretrainer.backbone.vision_encoder.blocks[0].attention.qkv.kernel
print("qkv kernel sharding:", qkv.value.sharding.spec, "(replicated)")
show("data parallel", data_parallel_logs)

"""
### The contrastive loss sees the global batch

The losses are those of the unsharded run:
"""

compare("data parallel", data_parallel_logs)

"""
This matters for TIPS. The contrastive loss of an image is a softmax over
*all* captions of the batch, so it is not a sum of per-example terms that
each device could compute on its own shard. In a hand-written
`pmap`-style step, each device would compare its 2 images with its own 2
captions (one negative each) unless the embeddings were explicitly
all-gathered first. Under SPMD, the train step is written for the global
arrays: the `(16, 16)` similarity matrix is computed on the sharded image
and text embeddings as if they were one array, and XLA moves the data it
needs between devices. Nothing in keras_tips gathers by hand.

The difference is not small. With the same embeddings, the per-shard loss
is a different (and much easier) objective:
"""

rng = np.random.default_rng(0)
images = rng.normal(size=(GLOBAL_BATCH, 64)).astype("float32")
# Each caption embedding is its image's embedding plus noise.
texts = (images + 3.0 * rng.normal(size=(GLOBAL_BATCH, 64))).astype("float32")
global_loss, _ = contrastive_loss(images, texts, 0.1)
shards = len(devices)
per_shard = [
    contrastive_loss(i, t, 0.1)[0]
    for i, t in zip(np.split(images, shards), np.split(texts, shards))
]
print(
    f"global-batch loss ({GLOBAL_BATCH} x {GLOBAL_BATCH} logits): "
    f"{float(global_loss):.4f}"
)
print(
    f"mean of per-device losses ({shards} x {GLOBAL_BATCH // shards} x "
    f"{GLOBAL_BATCH // shards} logits): {float(np.mean(per_shard)):.4f}"
)

"""
With fewer negatives, telling the matching caption apart is easier, the
loss is lower and its gradients carry less signal; at scale this is the
difference between training with 16,384 and with a few dozen negatives per
image.
"""

"""
The DINO centre and the Sinkhorn-Knopp normalisation of the teacher's
targets are batch statistics too; they are also computed over the global
batch, for the same reason.

## Model parallelism

When the towers or the prototype heads get large (the g/14 image tower,
65,536 prototypes), their weights can be split as well.
`keras_tips.training.distribution.get_layout_map` gives Megatron-style
layouts: the first matmul of each pair (attention QKV, MLP in) is split
along its output features and the second (attention out, MLP out) along
its input features, so each pair needs a single reduction; the token
embedding table and the prototype matrices are split along their large
axis; everything else is replicated.
"""

mesh = keras.distribution.DeviceMesh(
    (len(devices) // 4, 4), ["batch", "model"], devices
)
layout_map = tips_distribution.get_layout_map(mesh)
for pattern in layout_map:
    print(f"{pattern:28s} -> {layout_map[pattern].axes}")

"""
`model_parallel(4)` builds exactly this: a `(devices / 4, 4)` mesh, whose
first axis splits the batch (2-way data parallel here) and whose second
splits the weights 4 ways, and a `ModelParallel` with the layout map:
"""

model_parallel = tips_distribution.model_parallel(4)
with model_parallel.scope():
    pretrainer = build_pretrainer()
    model_parallel_logs = train(pretrainer)
split = [
    (v.path, v.value.sharding.spec)
    for v in pretrainer.weights
    if "model" in str(getattr(v.value.sharding, "spec", ""))
]
print(
    f"{len(split)} of {len(pretrainer.weights)} variables are split over the "
    "model axis, e.g."
)
for path, spec in split[:4]:
    print(f"  {path:48s} {spec}")
show("model parallel", model_parallel_logs)
compare("model parallel", model_parallel_logs)

"""
The teacher's copies of the towers and heads have the same variable paths
below their own prefixes, so the same patterns split them too. Patterns are
regular expressions matched against `variable.path`; add your own entries
to the returned `LayoutMap` for other layers.

## In a recipe

`TrainConfig.distribution` selects the set-up of a `keras-tips pretrain`
run: `"none"`, `"data_parallel"`, or `"model_parallel:N"` (N devices per
model replica). The loop builds the model and trains inside that
distribution's `scope()`, so the setting ends with the run:

```bash
keras-tips pretrain --recipe recipes/tips_b14_webli.py --output runs/b14 \\
    --set train.distribution=data_parallel

keras-tips pretrain --recipe recipes/tips_b14_webli.py --output runs/b14 \\
    --set train.distribution=model_parallel:4
```

`data.pipeline.batch_size` is the batch of one process; on one host it is
the global batch and must be divisible by the size of the mesh's batch
axis.

## Several hosts

On a multi-host cluster (a TPU pod slice, several GPU machines), every host
runs the same program on its own devices. Each one

1. joins the cluster before anything touches a device:
   `keras.distribution.initialize()` (it reads the coordinator address, the
   number of processes and the process id from its arguments or from the
   `KERAS_DISTRIBUTION_*` environment variables; on Cloud TPU it finds them
   itself);
2. reads a **disjoint shard** of the data: `PipelineConfig(shard_index=
   jax.process_index(), shard_count=jax.process_count())` makes process *i*
   read records `i::n` (equal shard sizes), with its own shuffle;
3. produces its *per-process* batch of `batch_size` examples. Keras
   assembles the per-process batches into one global batch array
   (`jax.make_array_from_process_local_data`), so the global batch is
   `batch_size x processes`, and the contrastive loss again sees all of it.

```python
import jax
import keras

keras.distribution.initialize()
keras.distribution.set_distribution(
    keras_tips.training.distribution.data_parallel()
)
config = PipelineConfig(
    batch_size=1024,  # per process
    shard_index=jax.process_index(),
    shard_count=jax.process_count(),
    global_image_size=224, local_crop_count=6, local_image_size=98,
)
```

With `keras-tips pretrain`, pass the shard of each host on its command line
(`--set data.pipeline.shard_index=$HOST --set data.pipeline.shard_count=8`;
see `recipes/tips_b14_webli.py`).

Give each host its own `--output` directory: a checkpoint holds the
position of *that host's* data iterator, so a resumed host continues on its
own shard. The built-in loop saves the weights as one `.h5` file per
process, which suits weights replicated on every host (data parallelism);
for weights split across hosts, use a sharded checkpointer such as Orbax.

## Summary

- `data_parallel()` and `model_parallel(n)` from
  `keras_tips.training.distribution` are ready-made `keras.distribution`
  set-ups for TIPS; `get_layout_map(mesh)` gives the tensor-parallel
  layouts.
- Sharded steps compute the same losses as one device: the contrastive
  loss, the DINO centre and Sinkhorn-Knopp see the global batch.
- Recipes choose with `train.distribution`; hosts split the data with
  `shard_index` / `shard_count`.
"""

print("Done: scaling_with_keras_distribution")
