"""Guards against non-finite losses: stop at the first, or skip them.

`train.nonfinite` of a recipe picks one: `"stop"` (`StopOnNonFiniteLoss`)
raises `FloatingPointError` naming the step and the non-finite loss terms;
`"skip"` wraps the optimizer in `SkipNonFiniteUpdates`, which leaves the
weights and optimizer state of such a step unchanged, and reports the skipped
steps with `SkipNonFiniteSteps`.
"""

import logging
import math

import keras
import numpy as np

logger = logging.getLogger(__name__)


def nonfinite_variable(model):
    """Path of the first floating-point variable of `model` holding NaN or
    infinity, or None when every one is finite."""
    for variable in model.weights:
        value = keras.ops.convert_to_numpy(variable)
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            return variable.path
    return None


def _nonfinite_logs(logs):
    return {
        name: float(value)
        for name, value in (logs or {}).items()
        if np.ndim(value) == 0 and not math.isfinite(float(value))
    }


def _current_step(model):
    if hasattr(model, "jax_state_sync"):
        # JAX keeps the state outside the variables during an epoch.
        model.jax_state_sync()
    return int(keras.ops.convert_to_numpy(model.step_counter))


def _terms(bad):
    return ", ".join(f"{k}={v}" for k, v in sorted(bad.items()))


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first step whose loss terms are not finite.

    Raises `FloatingPointError` naming the step and every non-finite term,
    before any checkpoint of that step can be written.
    """

    def on_train_batch_end(self, batch, logs=None):
        bad = _nonfinite_logs(logs)
        if bad:
            step = _current_step(self.model)
            raise FloatingPointError(
                f"Non-finite loss at training step {step}: {_terms(bad)}. "
                "Lower the learning rate, check the data, or set "
                '`train.nonfinite="skip"` in the recipe to skip such steps.'
            )


@keras.saving.register_keras_serializable(package="keras_tips")
class SkipNonFiniteUpdates(keras.optimizers.LossScaleOptimizer):
    """Applies the wrapped optimizer's update only when every gradient is
    finite; otherwise the step leaves the weights and the optimizer state
    (moments, `iterations`, hence the learning-rate schedule) unchanged.

    It is Keras' `LossScaleOptimizer` (which already skips such steps on
    every backend) with the loss scale fixed at 1: the loss is not scaled,
    the scale is never halved or doubled, and steps with finite gradients
    are exactly those of the wrapped optimizer.

    Args:
        inner_optimizer: the optimizer to wrap.
        name: optional name.
    """

    def __init__(self, inner_optimizer, name=None, **kwargs):
        kwargs.pop("initial_scale", None)
        kwargs.pop("dynamic_growth_steps", None)
        super().__init__(
            inner_optimizer,
            initial_scale=1.0,
            # Never reached: the scale is never doubled.
            dynamic_growth_steps=2**31 - 1,
            name=name,
            **kwargs,
        )

    def scale_loss(self, loss):
        return loss

    def _stateless_handle_non_finite_grads(
        self, optimizer_variables, trainable_variables
    ):
        return list(trainable_variables), list(optimizer_variables)

    def _stateful_handle_non_finite_grads(self):
        return None

    def get_config(self):
        config = super().get_config()
        config.pop("initial_scale", None)
        config.pop("dynamic_growth_steps", None)
        return config


class SkipNonFiniteSteps(keras.callbacks.Callback):
    """The non-finite guard of `train.nonfinite="skip"` (the model's
    optimizer must be a `SkipNonFiniteUpdates`).

    Logs a warning naming the first skipped step of each interval and its
    non-finite terms, adds `skipped_steps` (skipped in the interval) to the
    interval's logs, and raises `FloatingPointError` when skipping cannot
    help: every step of an interval was skipped, or a variable the forward
    pass updates (EMA teacher, centres) has become non-finite, which the
    optimizer cannot undo (e.g. NaN pixels reach the teacher).
    """

    def __init__(self):
        super().__init__()
        self._warned = False
        self._skipped_before = None

    def _skipped(self):
        step = int(keras.ops.convert_to_numpy(self.model.step_counter))
        applied = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        return step - applied

    def on_epoch_begin(self, epoch, logs=None):
        self._warned = False
        self._skipped_before = self._skipped()

    def on_train_batch_end(self, batch, logs=None):
        if self._warned:
            return
        bad = _nonfinite_logs(logs)
        if bad:
            self._warned = True
            step = _current_step(self.model)
            logger.warning(
                "Non-finite loss at training step %d (%s); the update of "
                "this step and of any other non-finite step of this "
                "interval is skipped.",
                step,
                _terms(bad),
            )

    def on_epoch_end(self, epoch, logs=None):
        skipped = self._skipped() - self._skipped_before
        if logs is not None:
            logs["skipped_steps"] = skipped
        step = int(keras.ops.convert_to_numpy(self.model.step_counter))
        name = nonfinite_variable(self.model)
        if name is not None:
            raise FloatingPointError(
                f"At training step {step} the variable {name!r} is not "
                "finite. Skipping non-finite steps keeps the trained weights "
                "finite, but not state updated in the forward pass (EMA "
                "teacher, centres): check the data for NaN/inf pixels."
            )
        steps = self.params.get("steps") if self.params else None
        if steps and skipped >= steps:
            raise FloatingPointError(
                f"Every step of the interval ending at step {step} had a "
                "non-finite loss and was skipped: training has stalled. "
                "Lower the learning rate or check the data."
            )


def nonfinite_guard(mode):
    """The callback of a `TrainConfig.nonfinite` mode (`"stop"`/`"skip"`)."""
    if mode == "stop":
        return StopOnNonFiniteLoss()
    if mode == "skip":
        return SkipNonFiniteSteps()
    raise ValueError(
        f"train.nonfinite must be 'stop' or 'skip'; received {mode!r}."
    )
