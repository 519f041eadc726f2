"""`TIPSModel`: the user-facing TIPS image-text model."""

import json
import os

import keras
import numpy as np
from keras import ops
from keras_hub.models import Task

# keras-hub has no public name for it: its model families register their
# presets with this function too.
from keras_hub.src.utils.preset_utils import register_presets

from keras_tips import backend
from keras_tips.conversion.keras_hub_presets import keras_hub_presets
from keras_tips.conversion.preset_cache import PRESET_WEIGHTS_FILE
from keras_tips.conversion.preset_cache import resolve_preset
from keras_tips.layers.contrastive_head import l2_normalize
from keras_tips.layers.interpolation import resize_bilinear
from keras_tips.layers.interpolation import spatial_size
from keras_tips.models.tips_backbone import TIPSBackbone
from keras_tips.models.tips_dpt_head import TIPSDPTHead
from keras_tips.models.tips_preprocessor import TIPSPreprocessor
from keras_tips.models.tips_presets import TIPS_PRESETS
from keras_tips.models.tips_tokenizer import check_texts

CLS_TOKENS = ("cls_1", "cls_2")
DEFAULT_TEMPLATES = ("a photo of a {}.",)


def check_images(images, patch_size=14):
    """Validates images for `encode_images`; returns a float32 NumPy array.

    Accepts (H, W, 3) or (B, H, W, 3) floats in [0, 1], or uint8 in
    [0, 255] (divided by 255, as `TIPSImageConverter` scales them), whose
    sides are multiples of `patch_size`; anything else raises a `ValueError`
    that says what is wrong and how to fix it.
    """
    if not isinstance(images, np.ndarray):
        try:
            images = ops.convert_to_numpy(images)
        except Exception:
            images = np.asarray(images)
    if images.dtype == object or images.dtype.kind not in "fiub":
        raise ValueError(
            f"Images must be a numeric array; received dtype {images.dtype}."
        )
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4:
        raise ValueError(
            "Images must have shape (height, width, 3) or (batch, height, "
            f"width, 3); received shape {images.shape}."
        )
    if images.shape[-1] != 3:
        hint = (
            " They look channels-first: transpose with "
            "np.transpose(images, (0, 2, 3, 1))."
            if images.shape[1] == 3
            else ""
        )
        raise ValueError(
            "Images must be RGB, channels last (..., 3); received shape "
            f"{images.shape}.{hint}"
        )
    if images.shape[0] == 0:
        raise ValueError("Received an empty batch of images.")
    if images.dtype.kind != "f" and images.dtype != np.uint8:
        raise ValueError(
            f"Images must be floats in [0, 1] or uint8 in [0, 255]; received "
            f"dtype {images.dtype}. Convert 0-255 integers with "
            "`images.astype('uint8')` or `images.astype('float32') / 255`, or "
            "run them through `model.preprocessor.image_converter`."
        )
    height, width = images.shape[1:3]
    if height < patch_size or width < patch_size or height % patch_size or (
        width % patch_size
    ):
        raise ValueError(
            f"Image height and width must be positive multiples of the patch "
            f"size {patch_size}; received {height} x {width}. Resize or crop "
            f"them first (e.g. with `model.preprocessor.image_converter`, "
            "the official preprocessing)."
        )
    if images.dtype == np.uint8:
        return images.astype("float32") / np.float32(255.0)
    images = images.astype("float32", copy=False)
    if not np.isfinite(images).all():
        raise ValueError("Images contain NaN or infinite values.")
    low, high = float(images.min()), float(images.max())
    if low < -1e-3 or high > 1.0 + 1e-3:
        raise ValueError(
            f"Image values must lie in [0, 1]; received values in [{low:g}, "
            f"{high:g}]. Divide 0-255 images by 255."
        )
    return images


def check_preset_files(preset_dir, load_weights=True):
    """Checks that a local preset folder's files are readable before Keras
    parses them, so a damaged file is named in the error.

    Raises:
        ValueError: a JSON file of the preset is not a JSON object.
        OSError: `model.weights.h5` is missing or not a readable HDF5 file.
    """
    for name in sorted(os.listdir(preset_dir)):
        path = os.path.join(preset_dir, name)
        if not name.endswith(".json") or not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                content = json.load(f)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"The preset file {path!r} is not valid JSON ({error}). Is "
                "the file complete?"
            ) from error
        if not isinstance(content, dict):
            raise ValueError(
                f"The preset file {path!r} does not hold a JSON object."
            )
    if not load_weights:
        return
    path = os.path.join(preset_dir, PRESET_WEIGHTS_FILE)
    if not os.path.isfile(path):
        return  # Sharded weights, or none: Keras Hub reports it.
    import h5py

    try:
        with h5py.File(path, "r") as f:
            # Reads every object header (not the data): finds truncated
            # files and damaged structure.
            f.visititems(lambda name, node: None)
    except Exception as error:
        raise OSError(
            f"The weights file {path!r} is damaged or not an HDF5 weights "
            f"file ({error})."
        ) from error


class DensePrediction(keras.layers.Layer):
    """An image tower feeding a DPT head, as one layer (so that one compiled
    inference function holds the weights of both). Returns the head's map at
    its own resolution.

    Args:
        encoder: a `TIPSVisionEncoder`.
        head: a `TIPSDPTHead` of the encoder's width.
        **kwargs: standard `keras.layers.Layer` arguments.
    """

    def __init__(self, encoder, head, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.head = head

    def call(self, images):
        outputs = self.encoder(
            images, return_intermediates=self.head.encoder_layers
        )
        height, width = spatial_size(images)
        size = self.encoder.patch_size
        grid = (height // size, width // size)
        features = []
        for level in range(len(self.head.encoder_layers)):
            patches = outputs["intermediate_patches"][:, level]
            features.append(
                (
                    outputs["intermediate_cls_1"][:, level],
                    ops.reshape(patches, (-1, *grid, patches.shape[-1])),
                )
            )
        return self.head(features)


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSModel(Task):
    """TIPS image-text model: encoders, preprocessing and zero-shot helpers.

    Args:
        backbone: a `TIPSBackbone`.
        preprocessor: a `TIPSPreprocessor` or None.
        **kwargs: standard `keras_hub.models.Task` arguments.

    Example:
    ```python
    model = keras_tips.TIPSModel.from_preset("tips_oss_b14_highres_distilled")
    features = model.encode_images(images)        # floats in [0, 1], NHWC
    features["cls_1"], features["patches"]        # (B, D), (B, N, D)
    text = model.encode_texts(["a dog", "a cat"])  # (2, D)
    probs = model.classify(images, ["dog", "cat"])  # (B, 2)
    ```
    """

    backbone_cls = TIPSBackbone
    preprocessor_cls = TIPSPreprocessor

    def __init__(self, backbone, preprocessor=None, **kwargs):
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor

        # === Functional model ===
        inputs = backbone.input
        outputs = backbone(inputs)
        kwargs.setdefault("compile", False)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self._inference_functions = {}

    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """Loads a TIPS model from a registered name or a preset directory.

        A registered name (see `TIPSModel.presets_available()`) is fetched
        from the official release and converted on first use, then cached.

        Args:
            preset: a registered name or a preset directory / handle.
            load_weights: bool. Whether to load the weights.
            **kwargs: forwarded to `keras_hub.models.Task.from_preset`.
        """
        preset = resolve_preset(preset, cls)
        local = isinstance(preset, (str, os.PathLike)) and os.path.isdir(preset)
        weights = None
        if local:
            preset = os.fspath(preset)
            check_preset_files(preset, load_weights)
            if load_weights and os.path.isfile(
                os.path.join(preset, PRESET_WEIGHTS_FILE)
            ):
                weights = os.path.join(preset, PRESET_WEIGHTS_FILE)
        try:
            model = super().from_preset(
                preset, load_weights=load_weights, **kwargs
            )
        except (OSError, RuntimeError, KeyError, ValueError) as error:
            if not local or preset in str(error):
                raise
            # h5py reports damaged weights files without naming them.
            if isinstance(error, ValueError):
                raise ValueError(
                    f"Could not load the preset {preset!r}: {error}"
                ) from error
            raise OSError(
                f"Could not load the preset {preset!r} (is its weights file "
                f"{PRESET_WEIGHTS_FILE} damaged?): {error}"
            ) from error
        if weights is not None:
            for variable in model.weights:
                value = ops.convert_to_numpy(variable)
                if value.dtype.kind == "f" and not np.isfinite(value).all():
                    raise ValueError(
                        f"The weights file {weights!r} holds NaN or infinite "
                        f"values (in {variable.path!r}): it is damaged or "
                        "comes from a diverged run."
                    )
        return model

    @staticmethod
    def presets_available():
        """Names of the registered official checkpoints."""
        return sorted(TIPS_PRESETS)

    # --- Encoding -------------------------------------------------------

    @property
    def patch_size(self):
        return self.backbone.vision_encoder.patch_size

    @staticmethod
    def _compiled_key(layer, *parts):
        """Key of a compiled inference function of `layer`.

        A compiled function keeps the fast-kernel setting it was compiled
        with (`keras_tips.backend.compile_inference`), and a `tf.function`
        also keeps the layer's structure: enabling LoRA (or quantising) adds
        variables and changes what the dense layers compute, so the key
        counts the variables too.
        """
        return (*parts, backend.fast_kernels_enabled(), len(layer.variables))

    def _image_function(self, options):
        key = self._compiled_key(
            self.backbone.vision_encoder, "images", *sorted(options.items())
        )
        if key not in self._inference_functions:
            encoder = self.backbone.vision_encoder

            def encode(images, patch_mask=None):
                return encoder(images, patch_mask=patch_mask, **options)

            self._inference_functions[key] = backend.compile_inference(
                encoder, encode
            )
        return self._inference_functions[key]

    def _text_function(self):
        key = self._compiled_key(self.backbone.text_encoder, "texts")
        if key not in self._inference_functions:
            encoder = self.backbone.text_encoder
            self._inference_functions[key] = backend.compile_inference(
                encoder, lambda ids, mask: encoder(ids, mask)
            )
        return self._inference_functions[key]

    def encode_images(
        self,
        images,
        batch_size=32,
        patch_mask=None,
        return_intermediates=False,
        return_value_patches=False,
    ):
        """Encodes images at the size given.

        Images are encoded as given, not resized: to preprocess photos as
        the official code does (squash to the model's resolution), run them
        through `model.preprocessor.image_converter` first.

        Args:
            images: float (B, H, W, 3) or (H, W, 3) in [0, 1], or uint8 in
                [0, 255], channels last, H and W multiples of 14.
            batch_size: int. Images per forward pass.
            patch_mask: optional bool (B, N): patches replaced by the mask
                token.
            return_intermediates: bool. Also return every block's normalised
                output (`"intermediate_*"` entries).
            return_value_patches: bool. Also return `"value_patches"` (value
                embeddings of the last block, for zero-shot segmentation).

        Returns:
            A dict of NumPy arrays: `"cls_1"`, `"cls_2"` (B, D) and
            `"patches"` (B, N, D), raw (after the final LayerNorm, not
            L2-normalised), N = (H / 14) * (W / 14) in row-major order.
        """
        images = check_images(images, self.patch_size)
        num_patches = self.backbone.vision_encoder.num_patches(*images.shape[1:3])
        if patch_mask is not None:
            patch_mask = np.asarray(patch_mask)
            if patch_mask.shape != (images.shape[0], num_patches):
                raise ValueError(
                    f"`patch_mask` must have shape {(images.shape[0], num_patches)}"
                    f"; received {patch_mask.shape}."
                )
            patch_mask = patch_mask.astype(bool)
        if int(batch_size) < 1:
            raise ValueError(f"`batch_size` must be >= 1; received {batch_size}.")
        function = self._image_function(
            {
                "return_intermediates": bool(return_intermediates),
                "return_value_patches": bool(return_value_patches),
            }
        )
        chunks = []
        for start in range(0, images.shape[0], int(batch_size)):
            stop = start + int(batch_size)
            mask = None if patch_mask is None else patch_mask[start:stop]
            outputs = function(images[start:stop], mask)
            chunks.append(
                {k: ops.convert_to_numpy(v).astype("float32") for k, v in outputs.items()}
            )
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

    def tokenize(self, texts):
        """Token ids and padding mask (NumPy) of a list of strings."""
        if self.preprocessor is None or self.preprocessor.tokenizer is None:
            raise ValueError(
                "This model has no tokenizer. Load it with "
                "`TIPSModel.from_preset(...)` or pass a `TIPSPreprocessor`."
            )
        return self.preprocessor.tokenizer.tokenize_numpy(texts)

    def encode_texts(self, texts, batch_size=256):
        """Encodes strings with the model's tokenizer and text tower.

        Args:
            texts: a string or a list of strings.
            batch_size: int. Texts per forward pass.

        Returns:
            A float32 NumPy array (T, D) of raw text embeddings (the empty
            string gives zeros).
        """
        texts = check_texts(texts)
        if not texts:
            raise ValueError("Received an empty list of texts.")
        token_ids, padding_mask = self.tokenize(texts)
        function = self._text_function()
        chunks = []
        for start in range(0, len(texts), int(batch_size)):
            stop = start + int(batch_size)
            chunks.append(
                ops.convert_to_numpy(
                    function(token_ids[start:stop], padding_mask[start:stop])
                ).astype("float32")
            )
        return np.concatenate(chunks)

    # --- Dense prediction --------------------------------------------------

    def _dense_function(self, head):
        key = self._compiled_key(self.backbone.vision_encoder, "dense", id(head))
        cached = self._inference_functions.get(key)
        if cached is None or cached[0] is not head:
            predictor = DensePrediction(self.backbone.vision_encoder, head)
            cached = (head, backend.compile_inference(predictor, predictor))
            self._inference_functions[key] = cached
        return cached[1]

    def predict_dense(self, images, head, batch_size=8, native_resolution=False):
        """Dense maps of images from a DPT head on this model's image tower.

        The image tower runs at the size given and hands the head the blocks
        of `head.encoder_layers` after the final LayerNorm (CLS1 and the
        patch map), as the official decoder notebook does.

        Args:
            images: float (B, H, W, 3) or (H, W, 3) in [0, 1] (or uint8 in
                [0, 255]), channels last, H and W multiples of 14 (the
                released heads: 448 x 448).
            head: a `TIPSDPTHead`, or a registered head name or preset
                directory (loaded with `TIPSDPTHead.from_preset` on first
                use and kept).
            batch_size: int. Images per forward pass.
            native_resolution: bool. Return the head's own resolution,
                16 * ceil(g / 2) per side of a g-patch side, instead of
                resizing bilinearly to H x W.

        Returns:
            A float32 NumPy array (B, H, W, C): segmentation logits
            (C = classes), depth (C = 1) or raw surface normals (C = 3; see
            `keras_tips.normalize_normals`).

        Example:
        ```python
        model = keras_tips.TIPSModel.from_preset("tips_v2_oss_b14")
        head = keras_tips.TIPSDPTHead.from_preset("tips_v2_b14_segmentation_dpt")
        logits = model.predict_dense(images, head)  # (B, 448, 448, 150)
        labels = logits.argmax(-1)
        ```
        """
        if not isinstance(head, TIPSDPTHead):
            # Loaded once per name, so that its compiled function is reused.
            key = ("dense_head", os.fspath(head))
            if key not in self._inference_functions:
                self._inference_functions[key] = TIPSDPTHead.from_preset(head)
            head = self._inference_functions[key]
        encoder = self.backbone.vision_encoder
        if head.input_embed_dim != encoder.hidden_dim:
            raise ValueError(
                f"The DPT head decodes features of width {head.input_embed_dim} "
                f"but this image tower has width {encoder.hidden_dim}: they do "
                "not belong together."
            )
        if max(head.encoder_layers) >= encoder.num_layers:
            raise ValueError(
                f"The DPT head reads blocks {list(head.encoder_layers)} but this "
                f"image tower has {encoder.num_layers} blocks."
            )
        images = check_images(images, self.patch_size)
        if int(batch_size) < 1:
            raise ValueError(f"`batch_size` must be >= 1; received {batch_size}.")
        function = self._dense_function(head)
        chunks = []
        for start in range(0, images.shape[0], int(batch_size)):
            maps = function(images[start : start + int(batch_size)])
            if not native_resolution:
                # Outside the compiled function: one compilation per input
                # size serves both resolutions.
                maps = resize_bilinear(maps, images.shape[1:3], align_corners=False)
            chunks.append(ops.convert_to_numpy(maps).astype("float32"))
        return np.concatenate(chunks)

    # --- Zero-shot --------------------------------------------------------

    def temperature_for(self, cls_token="cls_1"):
        """The learned temperature used with `cls_token` (a Python float)."""
        _check_cls(cls_token)
        head = self.backbone.contrastive_head
        value = head.temperature if cls_token == "cls_1" else head.synthetic_temperature
        return float(ops.convert_to_numpy(value))

    @staticmethod
    def normalize(embeddings):
        """L2-normalises embeddings along the last axis (NumPy in, out)."""
        return ops.convert_to_numpy(l2_normalize(ops.convert_to_tensor(embeddings)))

    def zero_shot_logits(self, image_embeddings, text_embeddings, cls_token="cls_1"):
        """cosine(image, text) / temperature for every image-text pair.

        Args:
            image_embeddings: (B, D) raw CLS embeddings (`cls_token`'s).
            text_embeddings: (T, D) raw text embeddings.
            cls_token: `"cls_1"` (web-caption alignment, the default for
                zero-shot, as officially) or `"cls_2"`.

        Returns:
            (B, T) NumPy logits.
        """
        images = self.normalize(np.asarray(image_embeddings, "float32"))
        texts = self.normalize(np.asarray(text_embeddings, "float32"))
        return images @ texts.T / self.temperature_for(cls_token)

    def classify(
        self, images, class_names, templates=DEFAULT_TEMPLATES, cls_token="cls_1"
    ):
        """Zero-shot class probabilities of images.

        Each class embedding is the normalised mean of its normalised template
        embeddings.

        Args:
            images: float (B, H, W, 3) in [0, 1] or uint8 in [0, 255].
            class_names: list of str.
            templates: format strings with one `{}` for the class name.
            cls_token: `"cls_1"` (default) or `"cls_2"`.

        Returns:
            (B, C) NumPy probabilities.
        """
        _check_cls(cls_token)
        class_names = check_texts(class_names)
        if not class_names:
            raise ValueError("`class_names` is empty.")
        prompts = [t.format(c) for c in class_names for t in templates]
        text = self.normalize(self.encode_texts(prompts))
        text = text.reshape(len(class_names), len(templates), -1).mean(axis=1)
        logits = self.zero_shot_logits(
            self.encode_images(images)[cls_token], text, cls_token
        )
        logits = logits - logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        return probabilities / probabilities.sum(axis=1, keepdims=True)


def _check_cls(cls_token):
    if cls_token not in CLS_TOKENS:
        raise ValueError(
            f"`cls_token` must be one of {CLS_TOKENS}; received {cls_token!r}."
        )


# Lists the registered checkpoints in `TIPSBackbone.presets` and
# `TIPSModel.presets`, and lets every keras-hub loader resolve their names
# (converting on first use; see `keras_tips.conversion.keras_hub_presets`).
register_presets(keras_hub_presets(TIPSModel), TIPSBackbone)
