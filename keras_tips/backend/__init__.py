"""The one seam for backend-specific speed: fused kernels and the PyTorch
inference forward, chosen per call.

The layers of both TIPS towers are written in Keras ops. Where a backend
computes a step faster in a form of its own, the layer calls one function of
this module for that step, and the function runs the form of the running
backend:

* `dense`: JAX, Keras' `Dense` and the erf form of GELU; TensorFlow, a 2-D
  matmul, bias and activation that Grappler fuses into one oneDNN op;
  PyTorch inference, oneDNN's linear with the activation fused.
* `attention`: JAX on the CPU, token-major einsums; TensorFlow, head-major
  matmuls and the fused softmax; PyTorch inference, SDPA on strided views.
* `fused_patch_embedding`: PyTorch inference, a reshape and one matmul.
* `fused_vision_block`: PyTorch inference, the whole block in torch ops.

`activate` and `gelu` are the activations the kernels use. Where a backend
has no form of its own, or a call is outside what its kernels cover
(PyTorch with gradients on, other dtypes, LoRA or quantised dense layers),
the plain Keras-op form of `keras_kernels` runs. The kernels of each backend
live in `jax_kernels`, `tensorflow_kernels` and `torch_kernels`; each says
why its forms are faster. Every kernel module (`keras_kernels` included)
defines the same functions: `dense`, `activate`, `gelu`, `attention`,
`fused_patch_embedding`, `fused_vision_block` and `compile_inference`.

The fast kernels are on by default. They are chosen per call: inside
`with fast_kernels(False):` every function here runs its plain Keras-op form
on every backend (the fast and plain forms agree to float32 round-off). A
compiled function keeps the setting it was traced with, so
`compile_inference` fixes the setting current when it is called for the
compiled function's whole life.

Also here: `compile_inference` (`jax.jit`, `tf.function` or
`torch.inference_mode`: the inference compilation `TIPSModel` uses) and
`resize_bilinear_antialiased` (TensorFlow graphs with image sizes known only
when they run).

Example:
```python
from keras_tips import backend

outputs = model.encode_images(images)  # fast kernels
with backend.fast_kernels(False):
    plain = model.encode_images(images)  # plain Keras ops
```
"""

import contextlib
import contextvars
import functools
import importlib

import keras

from keras_tips.backend import keras_kernels

# The functions every kernel module defines.
KERNEL_FUNCTIONS = (
    "dense",
    "activate",
    "gelu",
    "attention",
    "fused_patch_embedding",
    "fused_vision_block",
    "compile_inference",
)
_KERNEL_MODULES = {
    "jax": "keras_tips.backend.jax_kernels",
    "tensorflow": "keras_tips.backend.tensorflow_kernels",
    "torch": "keras_tips.backend.torch_kernels",
}
# A context variable: the setting is per thread (and per asyncio task).
_FAST_KERNELS = contextvars.ContextVar("keras_tips_fast_kernels", default=True)


@contextlib.contextmanager
def fast_kernels(enabled=True):
    """Switches the backend's fast kernels on or off inside the block.

    Args:
        enabled: bool. False runs the plain Keras-op form of every kernel.

    Example:
    ```python
    with keras_tips.backend.fast_kernels(False):
        outputs = encoder(images)
    ```
    """
    if not isinstance(enabled, bool):
        raise ValueError(
            f"`enabled` must be True or False. Received: enabled={enabled!r}"
        )
    token = _FAST_KERNELS.set(enabled)
    try:
        yield
    finally:
        _FAST_KERNELS.reset(token)


def fast_kernels_enabled():
    """Whether the fast kernels are on here (see `fast_kernels`)."""
    return _FAST_KERNELS.get()


@functools.cache
def backend_kernels(backend_name):
    """The kernel module of a Keras backend (imported on first use);
    `keras_kernels` for a backend without one."""
    module = _KERNEL_MODULES.get(backend_name)
    if module is None:
        return keras_kernels
    return importlib.import_module(module)


def _kernels():
    """The kernel module for this call."""
    if not _FAST_KERNELS.get():
        return keras_kernels
    return backend_kernels(keras.backend.backend())


# --- Kernels -----------------------------------------------------------------


def dense(layer, inputs, activation=None):
    """`activation(layer(inputs))` for a `keras.layers.Dense`, in the
    backend's fastest form.

    A LoRA, quantised or activated `Dense` always runs its own call (then
    `activation`), so LoRA and quantisation work with every kernel.

    Args:
        layer: a built `keras.layers.Dense`.
        inputs: (..., in) tensor.
        activation: None, `"gelu"` (exact) or `"relu"`.

    Returns:
        (..., units) tensor.
    """
    return _kernels().dense(layer, inputs, activation)


def activate(x, activation):
    """`activation(x)` for None (identity), `"gelu"` (exact) or `"relu"`."""
    return _kernels().activate(x, activation)


def gelu(x):
    """The exact (erf, not tanh) GELU, in the backend's fastest form."""
    return _kernels().gelu(x)


def attention(qkv, mask=None):
    """Softmax attention of a fused (B, T, 3, heads, head_dim) projection.

    Mathematically `keras.ops.dot_product_attention(q, k, v, mask=mask)`
    with the default 1/sqrt(head_dim) scale.

    Args:
        qkv: (B, T, 3, heads, head_dim) tensor: queries, keys and values.
        mask: optional bool tensor broadcastable to (B, heads, T, T); False
            entries are not attended to. Every query row must keep at least
            one key.

    Returns:
        (B, T, heads, head_dim) tensor.
    """
    return _kernels().attention(qkv, mask)


def fused_patch_embedding(conv, images):
    """The backend's fused form of a non-overlapping patch convolution.

    Args:
        conv: a built `keras.layers.Conv2D` whose strides equal its kernel
            size (channels last, "valid" padding).
        images: (B, H, W, C) tensor, H and W multiples of the patch size.

    Returns:
        The (B, N, D) patch tokens in row-major patch order, or None where
        the backend has no fused form for this call: then run `conv` itself.
    """
    return _kernels().fused_patch_embedding(conv, images)


def fused_vision_block(block, inputs, training=None, value_only=False):
    """A `VisionTransformerBlock`'s inference forward as one fused function.

    Args:
        block: a built `keras_tips.layers.VisionTransformerBlock`.
        inputs: (B, T, D) tokens.
        training: the block's `training` argument; the fused forward is for
            inference only.
        value_only: as in `VisionTransformerBlock.call`.

    Returns:
        The block's output, or None where the backend has no fused forward
        for this call: then the block runs its layers.
    """
    if training:
        return None
    return _kernels().fused_vision_block(block, inputs, value_only)


# --- Not switched by `fast_kernels` ----------------------------------------


def compile_inference(layer, function):
    """Compiles an inference function of `layer` for the running backend.

    JAX runs `function` under `jax.jit` with the layer's variables passed in
    (stateless), TensorFlow under `tf.function`, PyTorch eagerly in
    `torch.inference_mode()` (no autograd bookkeeping). The compiled
    function always runs with the `fast_kernels` setting current now.

    Args:
        layer: the `keras.layers.Layer` whose variables `function` reads.
        function: a function of tensors that calls `layer`.

    Returns:
        The compiled function (same arguments as `function`).

    Example:
    ```python
    encode = compile_inference(encoder, lambda images: encoder(images))
    outputs = encode(images)
    ```
    """
    enabled = fast_kernels_enabled()

    # `wraps` keeps `function`'s signature and identity for the compilers
    # (`tf.function` counts retracing per wrapped function).
    @functools.wraps(function)
    def with_setting(*args):
        with fast_kernels(enabled):
            return function(*args)

    kernels = backend_kernels(keras.backend.backend())
    return kernels.compile_inference(layer, with_setting)


def resize_bilinear_antialiased(images, height, width):
    """Bilinear, antialiased resize of (B, h, w, C) images to a size known
    only as scalar tensors when a TensorFlow graph runs (e.g. under
    `tf.function(reduce_retracing=True)`); `keras.ops.image.resize` takes
    Python ints only and computes the same resize for them."""
    backend_name = keras.backend.backend()
    if backend_name != "tensorflow":
        raise ValueError(
            "Image sizes must be Python ints on the "
            f"{backend_name} backend. Received: height={height!r}, "
            f"width={width!r}."
        )
    return backend_kernels(backend_name).resize_bilinear_antialiased(
        images, height, width
    )


def require_backend(backend_name, purpose):
    """Raises a clear error unless the running Keras backend is
    `backend_name` (for work only one backend does, such as an export
    format).

    Args:
        backend_name: `"jax"`, `"tensorflow"` or `"torch"`.
        purpose: str. What needs it, for the message (`"the 'onnx' export"`).

    Raises:
        ValueError: another backend runs; the message names the variable to
            set.
    """
    running = keras.backend.backend()
    if running != backend_name:
        raise ValueError(
            f"{purpose[:1].upper()}{purpose[1:]} runs on the {backend_name} "
            f"backend (running: {running}). Set KERAS_BACKEND={backend_name} "
            "before Python starts (a TIPS preset loads on every backend)."
        )


def running_backend():
    """The name of the running Keras backend (`"jax"`, `"tensorflow"` or
    `"torch"`), for messages and reports; code that behaves differently per
    backend belongs in this package's kernel modules instead."""
    return keras.backend.backend()
