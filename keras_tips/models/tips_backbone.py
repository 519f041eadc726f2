"""The TIPS dual encoder as a keras-hub `Backbone`."""

import keras
from keras_hub.models import Backbone

from keras_tips.layers.contrastive_head import ContrastiveHead

# The towers are deserialised from the backbone's config: register them.
from keras_tips.models import tips_text_encoder  # noqa: F401
from keras_tips.models import tips_vision_encoder  # noqa: F401


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSBackbone(Backbone):
    """TIPS image-text dual encoder.

    A functional model over the two towers and the contrastive head. Inputs:
    `"images"` (B, H, W, 3) in [0, 1] with H, W multiples of 14 (any size),
    `"token_ids"` (B, T) int and `"padding_mask"` (B, T) bool. Outputs: the
    raw (not L2-normalised) `"cls_1"`, `"cls_2"`, `"patches"`,
    `"text_embeddings"`, and `"logits"`: cosine(CLS1, text) / temperature
    between every image and every text of the batch.

    Args:
        vision_encoder: a `TIPSVisionEncoder`.
        text_encoder: a `TIPSTextEncoder`.
        temperature: float. Initial temperature of both alignments.
        dtype: optional dtype policy, e.g. `"mixed_bfloat16"`.
        **kwargs: standard `keras_hub.models.Backbone` arguments.

    Example:
    ```python
    backbone = TIPSBackbone(
        vision_encoder=TIPSVisionEncoder(64, 2, 4, 256, position_grid_size=4),
        text_encoder=TIPSTextEncoder(96, 64, 2, 4, 256, max_sequence_length=16),
    )
    outputs = backbone({
        "images": np.random.rand(2, 56, 56, 3),
        "token_ids": np.ones((2, 16), "int32"),
        "padding_mask": np.ones((2, 16), "bool"),
    })
    ```
    """

    def __init__(
        self, vision_encoder, text_encoder, temperature=0.01, dtype=None, **kwargs
    ):
        # === Layers ===
        self.vision_encoder = vision_encoder
        self.text_encoder = text_encoder
        self.contrastive_head = ContrastiveHead(
            temperature=temperature, dtype=dtype, name="contrastive_head"
        )

        # === Functional model ===
        images = keras.Input(shape=(None, None, 3), name="images")
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        padding_mask = keras.Input(shape=(None,), dtype="bool", name="padding_mask")
        image_outputs = self.vision_encoder(images)
        text_embeddings = self.text_encoder(token_ids, padding_mask)
        logits = self.contrastive_head(image_outputs["cls_1"], text_embeddings)
        super().__init__(
            inputs={
                "images": images,
                "token_ids": token_ids,
                "padding_mask": padding_mask,
            },
            outputs={
                "cls_1": image_outputs["cls_1"],
                "cls_2": image_outputs["cls_2"],
                "patches": image_outputs["patches"],
                "text_embeddings": text_embeddings,
                "logits": logits,
            },
            dtype=dtype,
            **kwargs,
        )

        # === Config ===
        self.temperature_init = float(temperature)

    @property
    def temperature(self):
        """Temperature of the CLS1 / web-caption alignment (a scalar)."""
        return self.contrastive_head.temperature

    @property
    def synthetic_temperature(self):
        """Temperature of the CLS2 / synthetic-caption alignment."""
        return self.contrastive_head.synthetic_temperature

    @property
    def patch_size(self):
        return self.vision_encoder.patch_size

    def default_lora_layer_names(self):
        """The fused query/key/value projections (`qkv`) of every attention
        layer of both towers: LoRA's usual query and value targets (keras-hub's
        default), here one dense layer with the keys."""
        return ["qkv"]

    def enable_lora(self, rank, target_layer_names=None):
        """Freezes the backbone and adds trainable LoRA weights.

        As `keras_hub.models.Backbone.enable_lora`: every weight is frozen
        and each dense layer named in `target_layer_names` (default
        `default_lora_layer_names()`: the fused `qkv` projections of both
        towers; add `"proj"` for the output projections) gets a rank-`rank`
        update `A @ B` with `B` zero, so the outputs do not change until it
        trains. Only `A` and `B` train: keras-hub leaves the targeted layers'
        biases trainable, here they stay frozen with the rest.
        `save_lora_weights` / `load_lora_weights` store the updates alone;
        `save_to_preset` merges them into the kernels.

        Args:
            rank: int. Rank of the updates.
            target_layer_names: optional list of layer names.

        Example:
        ```python
        backbone.enable_lora(4)
        backbone.trainable_weights  # the LoRA A and B matrices only
        ```
        """
        super().enable_lora(rank, target_layer_names=target_layer_names)
        layers = [layer for layer in self._flatten_layers(include_self=False) if layer.weights]
        targeted = [layers[index] for index in self._lora_enabled_layers]
        if not targeted:
            names = target_layer_names or self.default_lora_layer_names()
            raise ValueError(
                f"No layer named {names} can take LoRA weights in this "
                "backbone. TIPS's dense layers are named qkv, proj (attention), "
                "fc1, fc2 (MLP), w12, w3 (SwiGLU)."
            )
        for layer in targeted:
            if getattr(layer, "bias", None) is not None:
                layer.bias.trainable = False

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vision_encoder": keras.layers.serialize(self.vision_encoder),
                "text_encoder": keras.layers.serialize(self.text_encoder),
                "temperature": self.temperature_init,
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        dtype = config.get("dtype")
        for key in ("vision_encoder", "text_encoder"):
            if isinstance(config[key], dict):
                if dtype is not None:
                    config[key]["config"].setdefault("dtype", dtype)
                config[key] = keras.layers.deserialize(
                    config[key], custom_objects=custom_objects
                )
        return cls(**config)
