"""The fast kernels of every backend compute what the plain Keras ops do.

On tiny random towers, every output of the image tower (CLS tokens, patch
tokens, intermediates, pre-norm tokens, value patches, masked forward) and
of the text tower (padding and an all-padding text included) agrees within
1e-5 between the fast kernels and `fast_kernels(False)`. Each test also
counts the kernel functions that ran, so it cannot pass by running the plain
path twice: the backend's kernels run with the fast kernels on, and none of
them with them off.
"""

import collections

import keras
import numpy as np
import pytest

from keras_tips import TIPSBackbone
from keras_tips import TIPSModel
from keras_tips import TIPSTextEncoder
from keras_tips import TIPSVisionEncoder
from keras_tips import backend

pytestmark = pytest.mark.multibackend
ATOL = 1e-5
BACKEND = keras.backend.backend()
NUM_LAYERS = 2
IMAGE_SHAPE = (2, 42, 56, 3)  # A 3 x 4 patch grid; the position grid is 4 x 4.
IMAGE_OUTPUTS = dict(
    return_intermediates=True, return_prenorm=True, return_value_patches=True
)


def _kernel_module():
    return backend.backend_kernels(BACKEND)


# The backend's own kernels that must run, by tower, with the fast kernels on.
EXPECTED_KERNELS = {
    "jax": {
        "image_mlp": ("attend_token_major", "gelu"),
        "image_swiglu": ("attend_token_major",),
        "text": ("attend_token_major",),
    },
    "tensorflow": {
        "image_mlp": ("fused_dense", "attend_head_major"),
        "image_swiglu": ("fused_dense", "attend_head_major"),
        "text": ("fused_dense", "attend_head_major"),
    },
    "torch": {
        "image_mlp": (
            "fused_patch_embedding", "fused_vision_block", "matmul", "attend_views"
        ),
        "image_swiglu": (
            "fused_patch_embedding", "fused_vision_block", "matmul", "attend_views"
        ),
        "text": ("matmul", "attend_views"),
    },
}
ALL_KERNELS = sorted(
    {name for towers in EXPECTED_KERNELS[BACKEND].values() for name in towers}
)


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts the calls of the backend's kernels that returned a result (a
    fused forward that declines returns None)."""
    counts = collections.Counter()
    module = _kernel_module()
    for name in ALL_KERNELS:
        original = getattr(module, name)

        def counting(*args, _name=name, _original=original, **kwargs):
            result = _original(*args, **kwargs)
            if result is not None:
                counts[_name] += 1
            return result

        monkeypatch.setattr(module, name, counting)
    return counts


def _randomize(layer, seed):
    """Moves every weight off its initial value (zero biases and mask token,
    unit norms), so each one changes the outputs."""
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        value = keras.ops.convert_to_numpy(weight)
        weight.assign(value + rng.normal(0.0, 0.1, value.shape).astype(value.dtype))


def _vision(ffn_type="mlp", dtype=None):
    keras.utils.set_random_seed(0)
    encoder = TIPSVisionEncoder(
        hidden_dim=32,
        num_layers=NUM_LAYERS,
        num_heads=2,
        intermediate_dim=48,
        position_grid_size=4,
        ffn_type=ffn_type,
        layer_scale_init_value=0.5,
        dtype=dtype,
    )
    encoder.build((None, None, None, 3))
    _randomize(encoder, 1)
    return encoder


def _text():
    keras.utils.set_random_seed(0)
    encoder = TIPSTextEncoder(
        vocabulary_size=40,
        hidden_dim=32,
        num_layers=NUM_LAYERS,
        num_heads=2,
        intermediate_dim=48,
        max_sequence_length=8,
    )
    encoder.build()
    _randomize(encoder, 2)
    return encoder


def _images():
    rng = np.random.default_rng(3)
    images = rng.random(IMAGE_SHAPE, dtype="float32")
    patch_mask = rng.random((IMAGE_SHAPE[0], 12)) < 0.4
    patch_mask[0, 0] = True
    return images, patch_mask


def _texts():
    rng = np.random.default_rng(4)
    token_ids = rng.integers(1, 40, (3, 8)).astype("int32")
    padding_mask = np.ones((3, 8), bool)
    padding_mask[1, 5:] = False
    padding_mask[2] = False  # An empty text: pools to zeros.
    token_ids[~padding_mask] = 0
    return token_ids, padding_mask


def _numpy(outputs):
    if isinstance(outputs, dict):
        return {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}
    return {"embeddings": keras.ops.convert_to_numpy(outputs)}


def _run(layer, function, arguments, fast):
    """`function` compiled as `TIPSModel` compiles its encoders, under the
    fast-kernel setting `fast`; the outputs of each argument tuple."""
    with backend.fast_kernels(fast):
        compiled = backend.compile_inference(layer, function)
    return [_numpy(compiled(*args)) for args in arguments]


def _assert_close(fast, plain):
    assert len(fast) == len(plain)
    for fast_outputs, plain_outputs in zip(fast, plain):
        assert fast_outputs.keys() == plain_outputs.keys()
        for key in fast_outputs:
            np.testing.assert_allclose(
                fast_outputs[key], plain_outputs[key], atol=ATOL, rtol=0,
                err_msg=key,
            )


@pytest.mark.parametrize("ffn_type", ["mlp", "swiglu"])
def test_image_tower_fast_and_plain_agree(kernel_calls, ffn_type):
    encoder = _vision(ffn_type)
    images, patch_mask = _images()

    def encode(images, patch_mask):
        return encoder(images, patch_mask=patch_mask, **IMAGE_OUTPUTS)

    arguments = [(images, None), (images, patch_mask)]
    plain = _run(encoder, encode, arguments, fast=False)
    assert sum(kernel_calls.values()) == 0, dict(kernel_calls)
    fast = _run(encoder, encode, arguments, fast=True)
    for name in EXPECTED_KERNELS[BACKEND][f"image_{ffn_type}"]:
        assert kernel_calls[name] > 0, (name, dict(kernel_calls))
    if BACKEND == "torch":
        # Eager: every block of both calls and the value-patch rerun of the
        # last block ran fused.
        assert kernel_calls["fused_vision_block"] == 2 * (NUM_LAYERS + 1)
        assert kernel_calls["fused_patch_embedding"] == 2
    _assert_close(fast, plain)
    unmasked, masked = fast
    assert set(unmasked) == {
        "cls_1", "cls_2", "patches", "intermediate_cls_1",
        "intermediate_cls_2", "intermediate_patches", "prenorm_tokens",
        "value_patches",
    }
    # The mask and the value-only path really change the outputs.
    assert np.abs(unmasked["patches"] - masked["patches"]).max() > 1e-3
    assert np.abs(unmasked["patches"] - unmasked["value_patches"]).max() > 1e-3


def test_text_tower_fast_and_plain_agree(kernel_calls):
    encoder = _text()
    arguments = [_texts()]
    plain = _run(encoder, lambda ids, mask: encoder(ids, mask), arguments, False)
    assert sum(kernel_calls.values()) == 0, dict(kernel_calls)
    fast = _run(encoder, lambda ids, mask: encoder(ids, mask), arguments, True)
    for name in EXPECTED_KERNELS[BACKEND]["text"]:
        assert kernel_calls[name] > 0, (name, dict(kernel_calls))
    _assert_close(fast, plain)
    embeddings = fast[0]["embeddings"]
    assert np.all(embeddings[2] == 0)
    assert np.abs(embeddings[0] - embeddings[1]).max() > 1e-3


def test_encode_images_follows_the_setting_of_each_call(kernel_calls):
    """`TIPSModel` keeps one compiled function per setting, so a call under
    `fast_kernels(False)` never reuses a function compiled with the fast
    kernels, nor the other way round."""
    model = TIPSModel(TIPSBackbone(_vision(), _text()))
    images, _ = _images()
    with backend.fast_kernels(False):
        plain = model.encode_images(images)
    assert sum(kernel_calls.values()) == 0, dict(kernel_calls)
    fast = model.encode_images(images)
    assert kernel_calls["attend_" + {
        "jax": "token_major", "tensorflow": "head_major", "torch": "views"
    }[BACKEND]] > 0
    kernel_calls.clear()
    with backend.fast_kernels(False):
        again = model.encode_images(images)
    assert sum(kernel_calls.values()) == 0, dict(kernel_calls)
    for key in plain:
        np.testing.assert_allclose(fast[key], plain[key], atol=ATOL, rtol=0)
        np.testing.assert_array_equal(again[key], plain[key])


def test_compiled_function_keeps_the_setting_it_was_compiled_with():
    layer = keras.layers.Dense(4)
    layer.build((None, 3))
    seen = []

    def function(x):
        seen.append(backend.fast_kernels_enabled())
        return layer(x)

    with backend.fast_kernels(False):
        compiled = backend.compile_inference(layer, function)
    compiled(np.ones((2, 3), "float32"))
    assert seen and not any(seen)


@pytest.mark.skipif(BACKEND != "torch", reason="PyTorch's fused path only")
def test_torch_fused_path_guards(kernel_calls):
    import torch

    images, _ = _images()
    # Autograd on (training, or any call outside inference): Keras ops.
    encoder = _vision()
    with torch.enable_grad():
        encoder(images)
    assert sum(kernel_calls.values()) == 0, dict(kernel_calls)
    # Mixed precision: Keras ops even for inference.
    mixed = _vision(dtype="mixed_bfloat16")
    with torch.inference_mode():
        mixed(images)
    assert sum(kernel_calls.values()) == 0, dict(kernel_calls)
    # A LoRA dense layer runs its own call inside the fused block.
    qkv = encoder.blocks[0].attention.qkv
    qkv.enable_lora(2)
    qkv.lora_kernel_b.assign(np.full(qkv.lora_kernel_b.shape, 0.1, "float32"))
    with torch.enable_grad():
        expected = _numpy(encoder(images))
    with torch.inference_mode():
        fused = _numpy(encoder(images))
    assert kernel_calls["fused_vision_block"] == NUM_LAYERS
    _assert_close([fused], [expected])


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's XLA GELU only")
def test_tensorflow_xla_takes_the_erf_gelu(monkeypatch):
    import tensorflow as tf

    from keras_tips.backend import keras_kernels

    erf_calls = []
    original = keras_kernels.erf_gelu

    def counting(x):
        erf_calls.append(1)
        return original(x)

    monkeypatch.setattr(keras_kernels, "erf_gelu", counting)
    encoder = _vision()
    # At the position grid's own size: TensorFlow's antialiased resize has
    # no XLA kernel.
    images = np.random.default_rng(5).random((2, 56, 56, 3), dtype="float32")
    fast = _numpy(tf.function(lambda x: encoder(x))(images))
    assert not erf_calls  # Grappler fuses `tf.nn.gelu` outside XLA.
    xla = _numpy(tf.function(lambda x: encoder(x), jit_compile=True)(images))
    assert len(erf_calls) == NUM_LAYERS
    with backend.fast_kernels(False):
        plain = _numpy(encoder(images))
    _assert_close([fast, xla], [plain, plain])
