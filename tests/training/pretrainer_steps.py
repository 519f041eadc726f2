"""Recorded train steps of the TIPS objective, per backend.

Two tiny pretrainers that between them use every option of the objective
(centering and Sinkhorn-Knopp, unmasked and masked contrastive view, two
heads and one shared head, "available" and "fixed" caption weighting, KoLeo,
a teacher-temperature warm-up, batches with missing captions) take two SGD
steps on fixed batches. What is recorded: every logged value of each step,
and for every variable of the pretrainer (student, EMA teacher, heads,
centres, step counter) the sum and the absolute sum of its change over the
two steps. SGD makes the changes proportional to the gradients, so a moved
`stop_gradient` shows up as much as a changed loss value.

`tests/training/test_pretrainer.py` compares a fresh run with the record of
its backend. Record again only when the objective's numbers are meant to
change, on each backend:

    KERAS_BACKEND=jax python -m tests.training.pretrainer_steps
"""

import os

import keras
import numpy as np

from keras_tips.training.pretrainer import LOGGED
from tests.training.pretrain_fixtures import numpy_weights
from tests.training.pretrain_fixtures import random_batch
from tests.training.pretrain_fixtures import tiny_pretrainer

TESTDATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "testdata")
CONFIGS = {
    "centering": dict(koleo_weight=0.1),
    "sinkhorn_knopp": dict(
        centering="sinkhorn_knopp",
        contrastive_view="masked",
        share_heads=True,
        caption_weighting="fixed",
        koleo_weight=0.1,
        teacher_temperature_warmup_steps=2,
    ),
}
LOGGED_VALUES = ("loss",) + LOGGED


def record_path(backend=None):
    backend = backend or keras.backend.backend()
    return os.path.join(TESTDATA, f"pretrainer_steps_{backend}.npz")


def _batches():
    first = random_batch(seed=20)
    second = random_batch(seed=21)
    second["has_synthetic"][1:3] = False
    second["has_web"][0] = False
    return first, second


def run_steps(name):
    """Two SGD steps of the pretrainer `name` of `CONFIGS`.

    Returns:
        A dict of float64 arrays: `"{name}/logs"` (steps, len(LOGGED_VALUES))
        and `"{name}/changes"` (num_variables, 2) with the sum and the
        absolute sum of each variable's change.
    """
    pretrainer = tiny_pretrainer(**CONFIGS[name])
    pretrainer.compile(optimizer=keras.optimizers.SGD(0.05))
    before = numpy_weights(pretrainer)
    logs = []
    for batch in _batches():
        values = pretrainer.train_on_batch(batch, return_dict=True)
        logs.append([float(values[key]) for key in LOGGED_VALUES])
    changes = [
        (np.sum(delta), np.sum(np.abs(delta)))
        for delta in (
            np.asarray(after, np.float64) - np.asarray(start, np.float64)
            for start, after in zip(before, numpy_weights(pretrainer))
        )
    ]
    return {
        f"{name}/logs": np.asarray(logs, np.float64),
        f"{name}/changes": np.asarray(changes, np.float64),
    }


def load_record(backend=None):
    with np.load(record_path(backend), allow_pickle=False) as record:
        return {key: record[key] for key in record.files}


def main():
    record = {}
    for name in CONFIGS:
        record.update(run_steps(name))
    np.savez(record_path(), **record)
    print(f"Wrote {record_path()}: {', '.join(sorted(record))}")


if __name__ == "__main__":
    main()
