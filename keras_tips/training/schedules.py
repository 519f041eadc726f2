"""Learning-rate and scalar schedules.

All schedules are written with `keras.ops` on a (possibly traced) step
tensor, so they can be evaluated inside a compiled train step.

* `WarmupCosineDecay` (learning rate): for step s, warm-up length W and total
  length T,

      lr(s) = init + (peak - init) * s / W                 for s < W
      lr(s) = final + (peak - final) * (1 + cos(pi * p)) / 2,
              p = min((s - W) / (T - W), 1)                 for s >= W

* `cosine_schedule` (EMA momentum 0.994 -> 1, weight decay 0.04 -> 0.2):

      v(s) = end + (start - end) * (1 + cos(pi * min(s / T, 1))) / 2

* `linear_warmup_then_constant` (teacher temperature 0.04 -> 0.07):

      v(s) = start + (end - start) * min(s / W, 1)   (v = end when W = 0)
"""

import math

import keras
from keras import ops


def _as_float(step):
    return ops.cast(step, "float32")


def cosine_schedule(step, start, end, total_steps):
    """Half-cosine from `start` at step 0 to `end` at `total_steps`.

    Stays at `end` after `total_steps`; a non-positive `total_steps` gives
    `end` at every step.

    Args:
        step: scalar tensor or number.
        start: value at step 0.
        end: value from `total_steps` on.
        total_steps: length of the decay.

    Returns:
        float32 scalar tensor.
    """
    step = _as_float(step)
    total = _as_float(total_steps)
    progress = ops.where(
        total > 0, ops.clip(step / ops.maximum(total, 1.0), 0.0, 1.0), 1.0
    )
    start = ops.cast(start, "float32")
    end = ops.cast(end, "float32")
    return end + 0.5 * (start - end) * (1.0 + ops.cos(math.pi * progress))


def linear_warmup_then_constant(step, start, end, warmup_steps):
    """Linear ramp from `start` (step 0) to `end` (step `warmup_steps`), then
    constant `end`; `end` at every step when `warmup_steps` <= 0.

    Returns:
        float32 scalar tensor.
    """
    step = _as_float(step)
    warmup = _as_float(warmup_steps)
    fraction = ops.where(
        warmup > 0, ops.clip(step / ops.maximum(warmup, 1.0), 0.0, 1.0), 1.0
    )
    start = ops.cast(start, "float32")
    end = ops.cast(end, "float32")
    return start + (end - start) * fraction


def warmup_cosine(
    step,
    peak_value,
    total_steps,
    warmup_steps=0,
    initial_value=0.0,
    final_value=0.0,
):
    """Linear warm-up from `initial_value` to `peak_value` over
    `warmup_steps`, then a half-cosine to `final_value` at `total_steps`
    (constant afterwards).

    Returns:
        float32 scalar tensor.
    """
    step = _as_float(step)
    warmup = _as_float(warmup_steps)
    warm = linear_warmup_then_constant(step, initial_value, peak_value, warmup)
    decay = cosine_schedule(
        step - warmup, peak_value, final_value, _as_float(total_steps) - warmup
    )
    return ops.where(step < warmup, warm, decay)


@keras.saving.register_keras_serializable(package="keras_tips")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to a peak learning rate, then cosine decay.

    Args:
        peak_learning_rate: float. Learning rate at the end of the warm-up.
        total_steps: int. Step at which the decay reaches
            `final_learning_rate` (warm-up included); constant afterwards.
        warmup_steps: int. Length of the linear warm-up (0 for none).
        initial_learning_rate: float. Learning rate at step 0.
        final_learning_rate: float. Learning rate from `total_steps` on.
        name: optional str.

    Example:
    ```python
    schedule = WarmupCosineDecay(
        peak_learning_rate=1e-3, total_steps=10_000, warmup_steps=500
    )
    optimizer = keras.optimizers.AdamW(learning_rate=schedule)
    ```
    """

    def __init__(
        self,
        peak_learning_rate,
        total_steps,
        warmup_steps=0,
        initial_learning_rate=0.0,
        final_learning_rate=0.0,
        name=None,
    ):
        super().__init__()
        if int(warmup_steps) < 0 or int(total_steps) < int(warmup_steps):
            raise ValueError(
                "Expected 0 <= warmup_steps <= total_steps. Received: "
                f"warmup_steps={warmup_steps}, total_steps={total_steps}"
            )
        self.peak_learning_rate = float(peak_learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.initial_learning_rate = float(initial_learning_rate)
        self.final_learning_rate = float(final_learning_rate)
        self.name = name

    def __call__(self, step):
        return warmup_cosine(
            step,
            self.peak_learning_rate,
            self.total_steps,
            self.warmup_steps,
            self.initial_learning_rate,
            self.final_learning_rate,
        )

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "initial_learning_rate": self.initial_learning_rate,
            "final_learning_rate": self.final_learning_rate,
            "name": self.name,
        }
