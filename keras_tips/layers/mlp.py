"""Feed-forward blocks: the two-layer MLP and the fused SwiGLU of g/14.

Also home of the PyTorch inference kernels that the image tower's layers
share (`torch_inference_kernels`, `torch_linear`): on the PyTorch backend,
when autograd is off (`torch.inference_mode()` / `torch.no_grad()`, as in
`TIPSModel.encode_images`) and the layer computes in float32 on the CPU, the
layers run a hand-fused path written with `torch` ops on the Keras variables
instead of one Keras op per step. Its dense layers go through oneDNN's
`mkldnn._linear_pointwise` (the kernel `torch.compile` itself emits for CPU
linears): bias and GELU are fused into the matmul, and oneDNN's fp32 GEMM is
much faster than the MKL `sgemm` behind `torch.matmul` on CPUs where MKL
takes a generic code path (AMD). Every other case (JAX, TensorFlow, PyTorch
with gradients, GPUs, mixed precision, LoRA or quantised layers) takes the
plain Keras path. Set `KERAS_TIPS_TORCH_KERNELS=0` to always use the plain
path.
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
        x = self.fc1(inputs)
        if self.activation == "gelu":
            x = ops.gelu(x, approximate=False)
        else:
            x = ops.relu(x)
        return self.fc2(x)

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
        gate, value = ops.split(self.w12(inputs), 2, axis=-1)
        return self.w3(ops.silu(gate) * value)

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


# --- PyTorch inference kernels ------------------------------------------

_TORCH_KERNELS_ENABLED = os.environ.get("KERAS_TIPS_TORCH_KERNELS", "1") != "0"
_ONEDNN_LINEAR = {}


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
                    gelu = op(x, weight, bias, "gelu", [], "none")
                    if torch.allclose(
                        plain, expected, atol=1e-5
                    ) and torch.allclose(
                        gelu, torch.nn.functional.gelu(expected), atol=1e-5
                    ):
                        _ONEDNN_LINEAR["op"] = op
        except Exception:  # An older or slimmer build: use the fallback.
            pass
    return _ONEDNN_LINEAR["op"]


def _plain_dense(dense):
    return not (dense.lora_enabled or dense.quantization_mode) and (
        dense.activation is keras.activations.linear
    )


def torch_linear(dense, inputs, activation=None):
    """`dense(inputs)`, then `activation`, as one fused PyTorch call.

    Only valid where `torch_inference_kernels(inputs, dense)` holds.

    Args:
        dense: a built `keras.layers.Dense` without activation.
        inputs: float32 CPU `torch.Tensor` (..., in).
        activation: None, `"gelu"` (exact) or `"relu"`.
    """
    if not _plain_dense(dense):
        outputs = dense(inputs)
        if activation is not None:
            outputs = _torch_activation(outputs, activation)
        return outputs
    bias = dense.bias.value if dense.use_bias else None
    return torch_matmul(inputs, dense.kernel.value, bias, activation)


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
    if activation is not None:
        outputs = _torch_activation(outputs, activation)
    return outputs


def _torch_activation(x, activation):
    import torch

    if activation == "gelu":
        return torch.nn.functional.gelu(x)
    return torch.relu(x)
