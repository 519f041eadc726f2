"""Helper process for test_distribution: trains a tiny TIPS for a few steps
unsharded, data parallel or model parallel on 8 virtual CPU devices (JAX) and
saves the losses and final weights. Usage:
    python -m tests.training.distribution_worker MODE OUTPUT.npz
"""

import os
import sys

os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_tips import TIPSBackbone  # noqa: E402
from keras_tips import TIPSTextEncoder  # noqa: E402
from keras_tips import TIPSVisionEncoder  # noqa: E402
from keras_tips.training import distribution  # noqa: E402
from keras_tips.training.pretrainer import TIPSPretrainer  # noqa: E402
from tests.training.pretrain_fixtures import random_batch  # noqa: E402


def main(mode, output):
    assert len(keras.distribution.list_devices()) == 8
    if mode == "data_parallel":
        keras.distribution.set_distribution(distribution.data_parallel())
    elif mode == "model_parallel":
        keras.distribution.set_distribution(distribution.model_parallel(4))
    keras.utils.set_random_seed(0)
    backbone = TIPSBackbone(
        TIPSVisionEncoder(32, 2, 2, 64, position_grid_size=4, layer_scale_init_value=0.1),
        TIPSTextEncoder(64, 32, 1, 2, 64, max_sequence_length=8),
        temperature=0.1,
    )
    pretrainer = TIPSPretrainer(
        backbone, total_steps=10, num_prototypes=64, head_hidden_dim=32,
        head_bottleneck_dim=16, head_num_layers=2, teacher_momentum=(0.9, 1.0),
    )
    pretrainer.compile(optimizer=keras.optimizers.AdamW(1e-3))
    losses = []
    for step in range(3):
        batch = random_batch(batch_size=8, seed=step)
        batch["web_token_ids"] %= 64
        batch["synthetic_token_ids"] %= 64
        logs = pretrainer.train_on_batch(batch, return_dict=True)
        losses.append([logs[k] for k in ("loss", "contrastive_web", "distill", "mask")])
    sharding = str(getattr(backbone.vision_encoder.blocks[0].attention.qkv.kernel.value, "sharding", ""))
    weights = {f"w{i}": keras.ops.convert_to_numpy(w) for i, w in enumerate(pretrainer.weights)}
    np.savez(output, losses=np.array(losses), sharding=np.array(sharding), **weights)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
