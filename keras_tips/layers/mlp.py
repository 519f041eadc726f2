"""Feed-forward blocks (the two-layer MLP, the fused SwiGLU of g/14) and the
per-backend dense kernels that the layers of both towers share.

Backend-specific kernels (`dense`, `gelu`, `torch_inference_kernels`): the
layer math is the same everywhere, written in the form each backend runs
fastest on the CPU, where TIPS inference and small-scale training happen.

* TensorFlow: a dense layer is `tf.matmul` on the tokens flattened to 2-D,
  `tf.nn.bias_add` and `tf.nn.gelu` / `tf.nn.relu`; TensorFlow's graph
  optimiser fuses that pattern into one oneDNN matmul with bias and
  activation. (Keras' `Dense` on 3-D tokens goes through `tensordot`, whose
  reshapes leave the bias add and the five ops of the exact GELU unfused.)
* JAX: the exact GELU is `x * (1/2 + erf(x / sqrt(2)) / 2)`; XLA's CPU `erf`
  is much cheaper than the `erfc` that `jax.nn.gelu` uses.
* PyTorch, inference (autograd off: `torch.inference_mode()` or
  `torch.no_grad()`, as in `TIPSModel.encode_images`), float32 on the CPU:
  the layers run a hand-fused path written with `torch` ops on the Keras
  variables instead of one Keras op per step. Dense layers go through
  oneDNN's `mkldnn._linear_pointwise` (the kernel `torch.compile` itself
  emits for CPU linears) with bias and GELU fused; oneDNN's fp32 GEMM is also
  much faster than the MKL `sgemm` behind `torch.matmul` on CPUs where MKL
  takes a generic code path (AMD). Set `KERAS_TIPS_TORCH_KERNELS=0` to switch
  this path off.

Everything else (PyTorch with gradients, LoRA or quantised dense layers)
runs the plain Keras layers and ops.
"""

import os

import keras
from keras import ops

_ACTIVATIONS = ("gelu", "relu")


@keras.saving.register_keras_serializable(package="keras_tips")
class MLP(keras.layers.Layer):
    """Two dense layers with an activation in between.

    The image tower uses the exact (erf) GELU, the text tower ReLU.

    Args:
        intermediate_dim: int. Width of the hidden layer.
        activation: `"gelu"` (exact, not the tanh approximation) or `"relu"`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    mlp = MLP(intermediate_dim=256, activation="gelu")
    y = mlp(keras.ops.ones((2, 5, 64)))  # (2, 5, 64)
    ```
    """

    def __init__(self, intermediate_dim, activation="gelu", **kwargs):
        super().__init__(**kwargs)
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"`activation` must be one of {_ACTIVATIONS}. "
                f"Received: activation={activation!r}"
            )
        self.intermediate_dim = int(intermediate_dim)
        self.activation = activation

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        self.fc1 = keras.layers.Dense(
            self.intermediate_dim, dtype=self.dtype_policy, name="fc1"
        )
        self.fc1.build(input_shape)
        self.fc2 = keras.layers.Dense(
            hidden_dim, dtype=self.dtype_policy, name="fc2"
        )
        self.fc2.build(tuple(input_shape[:-1]) + (self.intermediate_dim,))

    def call(self, inputs):
        if torch_inference_kernels(inputs, self):
            return self.torch_inference_call(inputs)
        return dense(self.fc2, dense(self.fc1, inputs, self.activation))

    def torch_inference_call(self, inputs):
        """The fused PyTorch inference path (see `torch_inference_kernels`):
        the activation runs inside the first matmul."""
        hidden = torch_linear(self.fc1, inputs, self.activation)
        return torch_linear(self.fc2, hidden)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "intermediate_dim": self.intermediate_dim,
                "activation": self.activation,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_tips")
class FusedSwiGLU(keras.layers.Layer):
    """SwiGLU feed-forward with the two input projections fused in one matmul.

    `w12` projects to `2 * intermediate_dim`; the first half goes through
    SiLU and gates the second half; `w3` projects back. This is the layout of
    the released g/14 checkpoints (`mlp.w12.*`, `mlp.w3.*`).

    Args:
        intermediate_dim: int. Width of each gated half.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    ffn = FusedSwiGLU(intermediate_dim=256)
    y = ffn(keras.ops.ones((2, 5, 96)))  # (2, 5, 96)
    ```
    """

    def __init__(self, intermediate_dim, **kwargs):
        super().__init__(**kwargs)
        self.intermediate_dim = int(intermediate_dim)

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        self.w12 = keras.layers.Dense(
            2 * self.intermediate_dim, dtype=self.dtype_policy, name="w12"
        )
        self.w12.build(input_shape)
        self.w3 = keras.layers.Dense(
            hidden_dim, dtype=self.dtype_policy, name="w3"
        )
        self.w3.build(tuple(input_shape[:-1]) + (self.intermediate_dim,))

    def call(self, inputs):
        if torch_inference_kernels(inputs, self):
            return self.torch_inference_call(inputs)
        gate, value = ops.split(dense(self.w12, inputs), 2, axis=-1)
        return dense(self.w3, ops.silu(gate) * value)

    def torch_inference_call(self, inputs):
        """The fused PyTorch inference path (see `torch_inference_kernels`)."""
        import torch

        gate, value = torch_linear(self.w12, inputs).chunk(2, dim=-1)
        return torch_linear(self.w3, torch.nn.functional.silu(gate) * value)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"intermediate_dim": self.intermediate_dim})
        return config


def swiglu_intermediate_dim(hidden_dim, mlp_ratio=4.0):
    """Hidden width of a fused SwiGLU as DINOv2 sizes it: 2/3 of the MLP
    width, rounded up to a multiple of 8 (g/14: 1536 -> 4096)."""
    return (int(hidden_dim * mlp_ratio * 2 / 3) + 7) // 8 * 8


# --- Backend-specific kernels (see the module docstring) ------------------

_TORCH_KERNELS_ENABLED = os.environ.get("KERAS_TIPS_TORCH_KERNELS", "1") != "0"
_ONEDNN_LINEAR = {}
_SQRT_HALF = 0.7071067811865476


def dense(layer, inputs, activation=None):
    """`activation(layer(inputs))` for a `keras.layers.Dense` without its own
    activation, in the fastest form for the backend.

    Args:
        layer: a built `keras.layers.Dense` (activation None).
        inputs: (..., in) tensor.
        activation: None, `"gelu"` (exact) or `"relu"`.
    """
    if _plain_dense(layer):
        if torch_inference_kernels(inputs, layer):
            return torch_linear(layer, inputs, activation)
        if keras.backend.backend() == "tensorflow":
            return _tf_dense(layer, inputs, activation)
    return activate(layer(inputs), activation)


def activate(x, activation):
    """None (identity), `"gelu"` (exact) or `"relu"`."""
    if activation is None:
        return x
    if activation == "gelu":
        return gelu(x)
    return ops.relu(x)


def gelu(x):
    """The exact (erf) GELU. Under XLA (JAX; TensorFlow with `jit_compile`)
    as `x * (1/2 + erf(x / sqrt(2)) / 2)`, which XLA's CPU backend computes
    much faster than the `erfc` form of `jax.nn.gelu` and `tf.nn.gelu`."""
    backend = keras.backend.backend()
    if backend == "jax" or (backend == "tensorflow" and _tf_in_xla_context()):
        return x * (0.5 + 0.5 * ops.erf(x * _SQRT_HALF))
    return ops.gelu(x, approximate=False)


def _plain_dense(layer):
    return not (layer.lora_enabled or layer.quantization_mode) and (
        layer.activation is keras.activations.linear
    )


def _tf_in_xla_context():
    """Whether TensorFlow is tracing a function for XLA (`jit_compile`,
    which Keras' `fit` uses by default)."""
    try:
        import tensorflow as tf
        from tensorflow.python.ops import control_flow_util

        return bool(
            control_flow_util.GraphOrParentsInXlaContext(
                tf.compat.v1.get_default_graph()
            )
        )
    except Exception:  # The helper moved: assume no XLA.
        return False


def _tf_dense(layer, inputs, activation=None):
    """TensorFlow: 2-D `tf.matmul` + `tf.nn.bias_add` + activation, which
    Grappler fuses into one oneDNN `_FusedMatMul` (and XLA fuses anyway)."""
    import tensorflow as tf

    kernel = tf.cast(layer.kernel.value, inputs.dtype)
    units = kernel.shape[1]
    outputs = tf.matmul(tf.reshape(inputs, [-1, kernel.shape[0]]), kernel)
    if layer.use_bias:
        outputs = tf.nn.bias_add(outputs, tf.cast(layer.bias.value, inputs.dtype))
    outputs = activate(outputs, activation)
    static_shape = inputs.shape[:-1].concatenate([units])
    if static_shape.is_fully_defined():
        return tf.reshape(outputs, static_shape)
    outputs = tf.reshape(
        outputs, tf.concat([tf.shape(inputs)[:-1], [units]], axis=0)
    )
    outputs.set_shape(static_shape)
    return outputs


def torch_inference_kernels(inputs, layer):
    """Whether `layer` may run its fused PyTorch inference path on `inputs`.

    True only on the PyTorch backend, with autograd off, for a float32 layer
    and a float32 CPU tensor (never for symbolic or "meta" tensors, so shape
    inference and functional-model construction take the Keras path).
    """
    if not _TORCH_KERNELS_ENABLED or keras.backend.backend() != "torch":
        return False
    import torch

    return (
        isinstance(inputs, torch.Tensor)
        and not torch.is_grad_enabled()
        and inputs.device.type == "cpu"
        and inputs.dtype == torch.float32
        and layer.compute_dtype == "float32"
        and layer.variable_dtype == "float32"
    )


def _onednn_linear():
    """oneDNN's fused linear op, or None where this PyTorch build lacks it
    (or it fails a one-off check against `torch.nn.functional.linear`)."""
    if "op" not in _ONEDNN_LINEAR:
        _ONEDNN_LINEAR["op"] = None
        try:
            import torch

            op = torch.ops.mkldnn._linear_pointwise
            if torch.backends.mkldnn.is_available():
                with torch.inference_mode():
                    x = torch.linspace(-2.0, 2.0, 2 * 3 * 8).reshape(2, 3, 8)
                    weight = torch.linspace(-1.0, 1.0, 5 * 8).reshape(8, 5).t()
                    bias = torch.linspace(0.0, 1.0, 5)
                    expected = torch.nn.functional.linear(x, weight, bias)
                    plain = op(x, weight, bias, "none", [], "")
                    fused = op(x, weight, bias, "gelu", [], "none")
                    if torch.allclose(
                        plain, expected, atol=1e-5
                    ) and torch.allclose(
                        fused, torch.nn.functional.gelu(expected), atol=1e-5
                    ):
                        _ONEDNN_LINEAR["op"] = op
        except Exception:  # An older or slimmer build: use the fallback.
            pass
    return _ONEDNN_LINEAR["op"]


def torch_linear(layer, inputs, activation=None):
    """`layer(inputs)`, then `activation`, as one fused PyTorch call.

    Only valid where `torch_inference_kernels(inputs, layer)` holds.

    Args:
        layer: a built `keras.layers.Dense` without activation.
        inputs: float32 CPU `torch.Tensor` (..., in).
        activation: None, `"gelu"` (exact) or `"relu"`.
    """
    if not _plain_dense(layer):
        return _torch_activation(layer(inputs), activation)
    bias = layer.bias.value if layer.use_bias else None
    return torch_matmul(inputs, layer.kernel.value, bias, activation)


def torch_matmul(inputs, kernel, bias=None, activation=None):
    """`activation(inputs @ kernel + bias)` in one oneDNN call where the
    PyTorch build has it (else `torch.nn.functional.linear`).

    Args:
        inputs: float32 CPU `torch.Tensor` (..., in).
        kernel: (in, out) tensor, the Keras layout.
        bias: optional (out,) tensor.
        activation: None, `"gelu"` (exact) or `"relu"`.
    """
    import torch

    # Linear takes the weight as (out, in): the transposed view of the
    # Keras kernel is read in place, nothing is copied.
    weight = kernel.t()
    op = _onednn_linear()
    if op is not None:
        if activation == "gelu":
            return op(inputs, weight, bias, "gelu", [], "none")
        if activation == "relu":
            return op(inputs, weight, bias, "relu", [], "")
        return op(inputs, weight, bias, "none", [], "")
    outputs = torch.nn.functional.linear(inputs, weight, bias)
    return _torch_activation(outputs, activation)


def _torch_activation(x, activation):
    import torch

    if activation == "gelu":
        return torch.nn.functional.gelu(x)
    if activation == "relu":
        return torch.relu(x)
    return x
