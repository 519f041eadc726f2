"""A tiny TIPS memorises a handful of image-caption pairs."""

import keras
import numpy as np
import pytest

from tests.training.pretrain_fixtures import random_batch
from tests.training.pretrain_fixtures import tiny_pretrainer

STEPS = 120
VOCABULARY_IDS = np.arange(2, 50)  # 0 is padding


def memorisation_batch():
    """Eight images, each with its own caption (one repeated token id)."""
    batch = random_batch(batch_size=8, seed=3)
    rng = np.random.default_rng(0)
    # A per-image tint makes the images tell apart from their CLS tokens;
    # uniform noise alone gives nearly identical CLS tokens at this size.
    tint = rng.random((8, 1, 1, 3))
    batch["global_images"] = (0.5 * batch["global_images"] + 0.5 * tint).astype("float32")
    for key in ("web_token_ids", "synthetic_token_ids"):
        ids = rng.permutation(VOCABULARY_IDS)[:8]
        batch[key] = np.repeat(ids[:, None], batch[key].shape[1], axis=1).astype("int32")
        batch[key.replace("token_ids", "padding_mask")][:] = True
    return batch



def train(pretrainer, batch):
    pretrainer.compile(optimizer=keras.optimizers.AdamW(3e-3, weight_decay=0.0))
    first = pretrainer.train_on_batch(batch, return_dict=True)
    for _ in range(STEPS - 1):
        logs = pretrainer.train_on_batch(batch, return_dict=True)
    # Logs are running means since the last reset; evaluate the final state.
    pretrainer.reset_metrics()
    final = {k: float(keras.ops.convert_to_numpy(v)) for k, v in pretrainer(batch).items()}
    return first, logs, final


@pytest.mark.parametrize(
    "options",
    [
        # The default (unmasked) contrastive view, contrastive terms only.
        dict(distill_weight=0.0, mask_weight=0.0),
        # The whole objective. With the masked view the contrastive terms
        # see the same student pass as iBOT; with the unmasked view and
        # random images the young teacher's terms hold the contrastive loss
        # near log(B) for about 100 steps before it falls, too long here.
        dict(contrastive_view="masked"),
    ],
    ids=["contrastive", "full_objective"],
)
def test_overfits_a_handful_of_pairs(options, seed=0):
    pretrainer = tiny_pretrainer(seed=seed, total_steps=STEPS, **options)
    first, logs, final = train(pretrainer, memorisation_batch())
    assert final["accuracy_web"] == 1.0, final
    assert final["accuracy_synthetic"] == 1.0, final
    for term in ("contrastive_web", "contrastive_synthetic"):
        assert final[term] < 0.25 * first[term], (term, first[term], final[term])
    assert all(np.isfinite(v) for v in final.values()), final
    assert final["loss"] < first["loss"], (first["loss"], final["loss"])
    assert logs["loss"] < first["loss"]
    if options.get("distill_weight") == 0.0:
        assert final["loss"] < 0.25 * first["loss"], (first["loss"], final["loss"])
    # With the teacher on, the distillation and iBOT terms of random images
    # may rise towards log(num_prototypes) as the teacher sharpens, so the
    # total falls by less.
