"""Helper process for test_compiled_and_gradients: evaluates every loss under
jax.jit on inputs sharded along the batch axis over 4 virtual CPU devices and
on unsharded inputs, and prints both as JSON. Usage:
    python -m tests.losses.spmd_worker
"""

import json
import os

os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec  # noqa: E402

from keras_tips.losses.contrastive import contrastive_loss  # noqa: E402
from keras_tips.losses.ibot import ibot_patch_loss  # noqa: E402
from keras_tips.losses.koleo import koleo_loss  # noqa: E402
from keras_tips.losses.teacher_targets import sinkhorn_knopp_teacher_probs  # noqa: E402
from keras_tips.losses.teacher_targets import updated_center  # noqa: E402


def losses(x):
    contrastive, accuracy = contrastive_loss(x["images"], x["texts"], 0.1, x["valid"])
    sinkhorn = sinkhorn_knopp_teacher_probs(x["teacher"], 0.05)
    return {
        "contrastive": contrastive,
        "accuracy": accuracy,
        "koleo": koleo_loss(x["images"]),
        "ibot": ibot_patch_loss(x["patches"], x["patch_probs"], x["mask"], 0.1),
        # Sinkhorn and the centres need sums over the whole (global) batch.
        "sinkhorn_column_mass": sinkhorn.sum(axis=0),
        "sinkhorn_first_row": sinkhorn[0],
        "center": updated_center(x["center"], x["teacher"], 0.5)[0],
        "masked_center": updated_center(
            x["center"], x["patches"], 0.5, sample_mask=x["mask"]
        )[0],
    }


def main():
    assert len(jax.devices()) == 4
    rng = np.random.default_rng(0)
    batch, dim, patches, prototypes = 8, 6, 3, 5
    probs = rng.random((batch, patches, prototypes))
    x = {
        "images": rng.normal(size=(batch, dim)).astype("float32"),
        "texts": rng.normal(size=(batch, dim)).astype("float32"),
        "valid": rng.random(batch) < 0.7,
        "teacher": rng.uniform(-1, 1, (batch, prototypes)).astype("float32"),
        "patches": rng.normal(size=(batch, patches, prototypes)).astype("float32"),
        "patch_probs": (probs / probs.sum(-1, keepdims=True)).astype("float32"),
        "mask": rng.random((batch, patches)) < 0.5,
        "center": np.zeros((1, prototypes), "float32"),
    }
    mesh = Mesh(np.array(jax.devices()), ("batch",))
    sharded = {
        key: value
        if key == "center"
        else jax.device_put(value, NamedSharding(mesh, PartitionSpec("batch")))
        for key, value in x.items()
    }
    assert len(sharded["images"].sharding.device_set) == 4
    compiled = jax.jit(losses)
    result = {
        "sharded": {k: np.asarray(v).tolist() for k, v in compiled(sharded).items()},
        "single": {k: np.asarray(v).tolist() for k, v in compiled(x).items()},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
