"""PyTorch kernels of `keras_tips.backend`: the hand-fused inference forward.

For inference (autograd off: `torch.inference_mode()` or `torch.no_grad()`,
as in `TIPSModel.encode_images`), float32, on the CPU, the layers run
`torch` ops on their Keras variables instead of one Keras op per step
(`inference_applies` says when):

* Dense layers go through oneDNN's `mkldnn._linear_pointwise` (the kernel
  `torch.compile` itself emits for CPU linears) with bias and GELU fused
  (`linear`, `matmul`); oneDNN's fp32 GEMM is also much faster than the MKL
  `sgemm` behind `torch.matmul` on CPUs where MKL takes a generic code path
  (AMD). Builds without the op use `torch.nn.functional.linear`.
* Attention: `torch.nn.functional.scaled_dot_product_attention` (flash
  kernel on the CPU) on strided views of the qkv projection, no copies.
* The image tower: the patch convolution as a reshape and one matmul
  (`fused_patch_embedding`), and each `VisionTransformerBlock` as one
  function (`fused_vision_block`: LayerNorm, attention, feed-forward and
  `x + gamma * branch` as one `addcmul`) without a Keras layer call or op in
  between. The functions read the Keras layers' variables; the layers stay
  the only owners of the weights.

Everything else (gradients on, other dtypes or devices, symbolic tensors,
LoRA or quantised dense layers) runs the Keras ops of `keras_kernels`, where
`keras.ops.dot_product_attention` also calls the SDPA kernel.
"""

import functools

import torch

from keras_tips.backend import keras_kernels
from keras_tips.backend.keras_kernels import activate  # noqa: F401
from keras_tips.backend.keras_kernels import gelu  # noqa: F401


def inference_applies(inputs, layer=None):
    """Whether the fused inference path may run on `inputs` (and `layer`).

    True only with autograd off, for a float32 CPU `torch.Tensor` (never for
    symbolic or "meta" tensors, so shape inference and functional-model
    construction take the Keras path) and, if given, a layer that computes
    and stores its variables in float32.
    """
    return (
        isinstance(inputs, torch.Tensor)
        and not torch.is_grad_enabled()
        and inputs.device.type == "cpu"
        and inputs.dtype == torch.float32
        and (
            layer is None
            or (
                layer.compute_dtype == "float32"
                and layer.variable_dtype == "float32"
            )
        )
    )


# --- The kernels of the dispatch API ----------------------------------------


def dense(layer, inputs, activation=None):
    if keras_kernels.is_plain_dense(layer) and inference_applies(inputs, layer):
        return linear(layer, inputs, activation)
    return keras_kernels.dense(layer, inputs, activation)


def attention(qkv, mask=None):
    if not inference_applies(qkv):
        return keras_kernels.attention(qkv, mask)
    # (B, heads, T, head_dim) -> (B, T, heads, head_dim): a view.
    return attend_views(qkv, mask).transpose(1, 2)


def fused_patch_embedding(conv, images):
    """The strided patch convolution as a reshape and one matmul: the
    Conv2D kernel (P, P, 3, D) is already laid out like a flattened (P, P, 3)
    patch. (B, H, W, 3) images in, (B, N, D) patch tokens out; None where
    the fused path does not apply."""
    if not (
        inference_applies(images, conv)
        and tuple(conv.strides) == tuple(conv.kernel_size)
        and conv.padding == "valid"
        and conv.data_format == "channels_last"
        and not getattr(conv, "lora_enabled", False)
    ):
        return None
    batch, height, width, channels = images.shape
    size_h, size_w = conv.kernel_size
    grid_h, grid_w = height // size_h, width // size_w
    patches = images.reshape(batch, grid_h, size_h, grid_w, size_w, channels)
    patches = patches.permute(0, 1, 3, 2, 4, 5).reshape(
        batch, grid_h * grid_w, size_h * size_w * channels
    )
    kernel = conv.kernel.value.reshape(-1, conv.filters)
    bias = conv.bias.value if conv.use_bias else None
    return matmul(patches, kernel, bias)


def fused_vision_block(block, inputs, value_only=False):
    """A `VisionTransformerBlock` at inference in fused ops, or None where
    the fused path does not apply: `x + LS(attn(LN(x)))`, then
    `x + LS(ffn(LN(x)))` (stochastic depth is off at inference)."""
    if not inference_applies(inputs, block):
        return None
    attended = attention_layer(
        block.attention, layer_norm(block.norm1, inputs), value_only=value_only
    )
    x = torch.addcmul(inputs, attended, block.layer_scale1.gamma.value)
    normed = layer_norm(block.norm2, x)
    if block.ffn_type == "swiglu":
        hidden = swiglu(block.ffn, normed)
    else:
        hidden = mlp(block.ffn, normed)
    return torch.addcmul(x, hidden, block.layer_scale2.gamma.value)


def compile_inference(layer, function):
    """`function` run eagerly in `torch.inference_mode()` (no autograd
    bookkeeping; the fused inference path applies)."""

    def run_without_grad(*args):
        with torch.inference_mode():
            return function(*args)

    return run_without_grad


# --- Layer forwards of the fused path ----------------------------------------
# Only valid where `inference_applies` holds for the layer's inputs.


def layer_norm(layer, x):
    """A Keras `LayerNormalization` over the last axis, as one torch call."""
    return torch.nn.functional.layer_norm(
        x,
        (x.shape[-1],),
        layer.gamma.value if layer.scale else None,
        layer.beta.value if layer.center else None,
        layer.epsilon,
    )


def mlp(layer, inputs):
    """`keras_tips.layers.MLP`: the activation runs inside the first matmul."""
    hidden = linear(layer.fc1, inputs, layer.activation)
    return linear(layer.fc2, hidden)


def swiglu(layer, inputs):
    """`keras_tips.layers.FusedSwiGLU`."""
    gate, value = linear(layer.w12, inputs).chunk(2, dim=-1)
    return linear(layer.w3, torch.nn.functional.silu(gate) * value)


def attention_layer(layer, inputs, key_padding_mask=None, value_only=False):
    """`keras_tips.layers.FusedQKVAttention` (same arguments as its `call`)."""
    batch, length, width = inputs.shape
    qkv = linear(layer.qkv, inputs).view(
        batch, length, 3, layer.num_heads, layer.head_dim
    )
    if value_only:
        return linear(layer.proj, qkv[:, :, 2].reshape(inputs.shape))
    mask = None
    if key_padding_mask is not None:
        mask = torch.as_tensor(
            key_padding_mask, dtype=torch.bool, device=inputs.device
        )
        # As in the layer: an all-padding text attends everywhere.
        mask = mask | ~mask.any(dim=-1, keepdim=True)
        mask = mask[:, None, None, :]
    # (B, heads, T, head_dim) -> (B, T, width); the CPU flash kernel
    # already lays its output out as (B, T, heads, head_dim).
    attended = attend_views(qkv, mask).transpose(1, 2)
    return linear(layer.proj, attended.reshape(batch, length, width))


def attend_views(qkv, mask=None):
    """SDPA of a (B, T, 3, heads, head_dim) qkv on (B, heads, T, head_dim)
    strided views of it (no copies); (B, heads, T, head_dim) out."""
    query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    return torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=mask
    )


def linear(layer, inputs, activation=None):
    """`activation(layer(inputs))` for a `keras.layers.Dense`, as one fused
    call where the layer is plain (`keras_kernels.is_plain_dense`); a LoRA
    or quantised layer runs its own call."""
    if not keras_kernels.is_plain_dense(layer):
        return _activation(layer(inputs), activation)
    bias = layer.bias.value if layer.use_bias else None
    return matmul(inputs, layer.kernel.value, bias, activation)


def matmul(inputs, kernel, bias=None, activation=None):
    """`activation(inputs @ kernel + bias)` in one oneDNN call where the
    PyTorch build has it (else `torch.nn.functional.linear`).

    Args:
        inputs: float32 CPU `torch.Tensor` (..., in).
        kernel: (in, out) tensor, the Keras layout.
        bias: optional (out,) tensor.
        activation: None, `"gelu"` (exact) or `"relu"`.
    """
    # Linear takes the weight as (out, in): the transposed view of the
    # Keras kernel is read in place, nothing is copied.
    weight = kernel.t()
    op = onednn_linear()
    if op is not None:
        if activation == "gelu":
            return op(inputs, weight, bias, "gelu", [], "none")
        if activation == "relu":
            return op(inputs, weight, bias, "relu", [], "")
        return op(inputs, weight, bias, "none", [], "")
    outputs = torch.nn.functional.linear(inputs, weight, bias)
    return _activation(outputs, activation)


@functools.cache
def onednn_linear():
    """oneDNN's fused linear op, or None where this PyTorch build lacks it
    (or it fails a one-off check against `torch.nn.functional.linear`)."""
    try:
        op = torch.ops.mkldnn._linear_pointwise
        if not torch.backends.mkldnn.is_available():
            return None
        with torch.inference_mode():
            x = torch.linspace(-2.0, 2.0, 2 * 3 * 8).reshape(2, 3, 8)
            weight = torch.linspace(-1.0, 1.0, 5 * 8).reshape(8, 5).t()
            bias = torch.linspace(0.0, 1.0, 5)
            expected = torch.nn.functional.linear(x, weight, bias)
            plain = op(x, weight, bias, "none", [], "")
            fused = op(x, weight, bias, "gelu", [], "none")
            if torch.allclose(plain, expected, atol=1e-5) and torch.allclose(
                fused, torch.nn.functional.gelu(expected), atol=1e-5
            ):
                return op
    except Exception:  # An older or slimmer build: use the fallback.
        pass
    return None


def _activation(x, activation):
    if activation == "gelu":
        return torch.nn.functional.gelu(x)
    if activation == "relu":
        return torch.relu(x)
    return x
