"""Self-distillation teaches on a small task where it can: once the
contrastive terms have made the CLS tokens differ between images, the
teacher's targets are sharp, spread over several prototypes, and predicted
by the student from a local crop, so `distill` falls well below ln K.

The task: eight classes of images (fixed random 4 x 4 colour patterns plus
noise); local crops are random crops of the same image, so a local crop
tells its image's class and the student can predict the teacher's target
from it. The captions name the class, so the contrastive terms make the
CLS tokens differ between classes. The teacher follows the student closely
(momentum 0.9): at 0.99 over a run this short, the teacher is still mostly
its random initialisation, whose CLS token is nearly the same for every
image, and its targets carry no information about the image.
"""

import math

import keras
import numpy as np
import pytest

from keras_tips import TIPSBackbone
from keras_tips import TIPSTextEncoder
from keras_tips import TIPSVisionEncoder
from keras_tips.training.pretrainer import TIPSPretrainer

NUM_CLASSES = 8
NUM_PROTOTYPES = 16
BATCH = 16
LENGTH = 4
SIZE = 56
LOCAL = 28
STEPS = 160


def class_patterns(rng):
    blocks = rng.random((NUM_CLASSES, 4, 4, 3)).astype("float32")
    return np.repeat(np.repeat(blocks, SIZE // 4, axis=1), SIZE // 4, axis=2)


def batch_of(rng, patterns):
    labels = rng.integers(NUM_CLASSES, size=BATCH)
    images = patterns[labels] + 0.1 * rng.standard_normal((BATCH, SIZE, SIZE, 3))
    images = np.clip(images, 0.0, 1.0).astype("float32")
    local = np.empty((BATCH, 2, LOCAL, LOCAL, 3), "float32")
    for b in range(BATCH):
        for c in range(2):
            y, x = rng.integers(0, SIZE - LOCAL + 1, size=2)
            local[b, c] = images[b, y : y + LOCAL, x : x + LOCAL]
    tokens = np.full((BATCH, LENGTH), 3, "int32")
    tokens[:, 0] = 10 + labels  # the class word
    return {
        "global_images": images,
        "local_images": local,
        "patch_mask": rng.random((BATCH, (SIZE // 14) ** 2)) < 0.3,
        "web_token_ids": tokens,
        "web_padding_mask": np.ones((BATCH, LENGTH), bool),
        "synthetic_token_ids": tokens,
        "synthetic_padding_mask": np.ones((BATCH, LENGTH), bool),
    }


def mean_pairwise_cosine(x):
    x = np.asarray(x, np.float64)
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    cosines = x @ x.T
    return float(cosines[~np.eye(len(x), dtype=bool)].mean())


def train(start_step):
    keras.utils.set_random_seed(0)
    backbone = TIPSBackbone(
        TIPSVisionEncoder(32, 2, 2, 64, position_grid_size=4, layer_scale_init_value=0.1),
        TIPSTextEncoder(32, 32, 1, 2, 64, max_sequence_length=LENGTH),
        temperature=0.1,
    )
    pretrainer = TIPSPretrainer(
        backbone, total_steps=STEPS, num_prototypes=NUM_PROTOTYPES, head_hidden_dim=32,
        head_bottleneck_dim=16, head_num_layers=2, teacher_temperature=(0.04, 0.04),
        teacher_momentum=(0.9, 0.9),
        self_distillation_start_step=start_step,
    )
    pretrainer.compile(optimizer=keras.optimizers.AdamW(2e-3, weight_decay=0.04))
    rng = np.random.default_rng(0)
    patterns = class_patterns(rng)
    for _ in range(STEPS - 20):
        pretrainer.train_on_batch(batch_of(rng, patterns))
    pretrainer.reset_metrics()  # the last 20 steps' means
    for _ in range(20):
        logs = pretrainer.train_on_batch(batch_of(rng, patterns), return_dict=True)
    probe = batch_of(np.random.default_rng(1), patterns)
    cls_1 = pretrainer.backbone.vision_encoder(probe["global_images"])["cls_1"]
    logs = {k: float(v) for k, v in logs.items()}
    return logs, mean_pairwise_cosine(keras.ops.convert_to_numpy(cls_1))


@pytest.mark.slow
def test_self_distillation_learns_after_a_contrastive_start():
    log_k = math.log(NUM_PROTOTYPES)
    logs, cosine = train(start_step=60)
    # The means of the last 20 steps. Alive: sharp targets on several
    # prototypes, matched by the student from a local crop.
    assert logs["distill"] < 0.75 * log_k, logs
    assert logs["distill_teacher_entropy"] < 0.5 * log_k, logs
    assert logs["distill_prototypes_in_use"] >= 3, logs
    assert logs["distill_batch_entropy"] > math.log(3), logs  # not one prototype for all
    assert logs["distill_agreement"] > 0.3, logs  # chance: 1/16
    assert logs["mask"] < 0.75 * log_k, logs
    assert logs["contrastive_web"] < 0.8 * math.log(BATCH), logs
    assert cosine < 0.95, cosine
