"""A tiny TIPS memorises a handful of image-caption pairs."""

import keras
import numpy as np

from tests.training.pretrain_fixtures import random_batch
from tests.training.pretrain_fixtures import tiny_pretrainer


def test_overfits_a_handful_of_pairs():
    pretrainer = tiny_pretrainer(total_steps=80)
    pretrainer.compile(optimizer=keras.optimizers.AdamW(3e-3, weight_decay=0.0))
    batch = random_batch(batch_size=8, seed=3)
    # Distinct captions per image (the random ids above may collide).
    rng = np.random.default_rng(0)
    for key in ("web_token_ids", "synthetic_token_ids"):
        batch[key] = (rng.permutation(48)[:8, None] + np.arange(8)[None] * 0).astype("int32") % 48 + 2
    batch["web_padding_mask"][:] = True
    first = pretrainer.train_on_batch(batch, return_dict=True)
    for _ in range(79):
        logs = pretrainer.train_on_batch(batch, return_dict=True)
    # Logs are running means since the last reset; evaluate the final state.
    pretrainer.reset_metrics()
    final = {k: float(keras.ops.convert_to_numpy(v)) for k, v in pretrainer(batch).items()}
    assert final["accuracy_web"] == 1.0, final
    assert final["accuracy_synthetic"] == 1.0, final
    assert final["loss"] < 0.8 * first["loss"], (first["loss"], final["loss"])
    for term in ("contrastive_web", "contrastive_synthetic"):
        assert final[term] < 0.25 * first[term], (term, first[term], final[term])
    assert logs["loss"] < first["loss"]
