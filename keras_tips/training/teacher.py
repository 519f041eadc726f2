"""The EMA teacher: a frozen copy of student layers, updated by momentum."""

from keras import ops


def clone_layer(layer, name, *build_args):
    """A new, built, non-trainable layer with `layer`'s config and weights.

    Args:
        layer: a built layer.
        name: str. Name of the copy.
        *build_args: what `build` of the copy needs (e.g. an input shape).
    """
    config = layer.get_config()
    config["name"] = name
    clone = layer.__class__.from_config(config)
    clone.build(*build_args)
    clone.set_weights(layer.get_weights())
    clone.trainable = False
    return clone


def ema_update(teacher_layers, student_layers, momentum):
    """teacher <- momentum * teacher + (1 - momentum) * student, in place.

    The student values are wrapped in `stop_gradient` so that a teacher
    update made inside a differentiated forward pass (JAX's stateless train
    step) never sends gradients back into the student.

    Args:
        teacher_layers: list of layers whose weights are updated.
        student_layers: list of matching layers (same structure).
        momentum: scalar tensor or float in [0, 1].
    """
    for teacher, student in zip(teacher_layers, student_layers):
        teacher_weights, student_weights = teacher.weights, student.weights
        if len(teacher_weights) != len(student_weights):
            raise ValueError(
                f"Teacher {teacher.name} and student {student.name} do not "
                "have the same weights."
            )
        for t, s in zip(teacher_weights, student_weights):
            s_value = ops.stop_gradient(ops.cast(s, t.dtype))
            m = ops.cast(momentum, t.dtype)
            t.assign(m * t + (1.0 - m) * s_value)
