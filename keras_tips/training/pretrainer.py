"""`TIPSPretrainer`: the full TIPS objective as a Keras `train_step`."""

import keras
from keras import ops

from keras_tips.losses.contrastive import contrastive_loss
from keras_tips.losses.dino import centered_teacher_probs
from keras_tips.losses.dino import dino_cross_entropy
from keras_tips.losses.dino import sinkhorn_knopp_teacher_probs
from keras_tips.losses.dino import updated_center
from keras_tips.losses.ibot import ibot_patch_loss
from keras_tips.losses.koleo import koleo_loss
from keras_tips.training.heads import DINOHead
from keras_tips.training.schedules import cosine_schedule
from keras_tips.training.schedules import linear_warmup_then_constant
from keras_tips.training.teacher import clone_layer
from keras_tips.training.teacher import ema_update

LOSS_TERMS = (
    "contrastive_web",
    "contrastive_synthetic",
    "distill",
    "mask",
    "koleo",
)
LOGGED = LOSS_TERMS + (
    "accuracy_web",
    "accuracy_synthetic",
    "temperature_web",
    "temperature_synthetic",
    "teacher_momentum",
    "teacher_temperature",
)


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSPretrainer(keras.Model):
    """Pretrains a TIPS backbone with the full TIPS objective.

    `fit` takes batches (dicts) with `"global_images"` (B, G, G, 3) in [0, 1],
    optional `"contrastive_images"` (B, G, G, 3) (the crop paired with the
    captions; without it the contrastive loss uses the global crop),
    optional `"local_images"` (B, L, S, S, 3), `"patch_mask"` (B, N) bool,
    `"web_token_ids"` / `"web_padding_mask"` and `"synthetic_token_ids"` /
    `"synthetic_padding_mask"` (B, T), and optional `"has_web"` /
    `"has_synthetic"` (B,) bool. The loss is

        total = contrastive + distill_weight * L_distill
                + mask_weight * L_mask + koleo_weight * L_koleo

    where `contrastive` is ½(L_web + L_synthetic): a symmetric InfoNCE between
    CLS1 and the web caption and between CLS2 and the synthetic caption, each
    with its own learned temperature (in the backbone's `ContrastiveHead`).
    With `caption_weighting="available"` a batch without one caption type
    averages over the types it has instead of halving the other.
    `L_distill` is DINO self-distillation of CLS1: the student's local crops
    against the teacher's global crop; `L_mask` is the iBOT loss on the
    patch tokens the student saw masked (the teacher sees the unmasked crop).
    By default the contrastive loss sees the unmasked global crop (so a caption
    never describes an object the student cannot see); `contrastive_view=
    "masked"` reuses the masked pass instead, saving one student forward.

    The teacher (image tower + heads) is an exponential moving average of the
    student, never touched by the optimizer. It is updated at the start of
    each step, before it is used, from the student weights that the previous
    step produced; that is the usual "update after the optimizer" order, and
    it is written as plain variable assignments inside the forward pass, which
    Keras carries through JAX's stateless train step, TensorFlow graphs and
    PyTorch alike. The step counter, teacher weights and centres are Keras
    variables saved with the model.

    Args:
        backbone: the student `TIPSBackbone`.
        total_steps: int. Length of the run; sets the momentum schedule.
        num_prototypes: int. DINO/iBOT prototypes K (65,536 at scale).
        head_hidden_dim: int. Head MLP width (2,048 at scale).
        head_bottleneck_dim: int. Head bottleneck width (256 at scale).
        head_num_layers: int. Head MLP depth (3).
        share_heads: bool. One head for CLS and patches (else one each).
        distill_weight: float. α (1.0); 0 disables self-distillation.
        mask_weight: float. β (2.0); 0 disables masked image modelling.
        koleo_weight: float. KoLeo regulariser weight (0 disables).
        use_synthetic_captions: bool. False trains CLS1 on web captions only.
        caption_weighting: `"available"` or `"fixed"` (always ½ each).
        teacher_momentum: (start, end) of the cosine momentum schedule.
        teacher_temperature: (start, end) of the teacher temperature,
            warmed up linearly over `teacher_temperature_warmup_steps`.
        teacher_temperature_warmup_steps: int.
        student_temperature: float (0.1).
        center_momentum: float (0.9).
        centering: `"centering"` (momentum centre) or `"sinkhorn_knopp"`.
        contrastive_view: `"unmasked"`: the contrastive loss sees the whole
            global crop, or the batch's `"contrastive_images"` when it has
            them (one more student pass when a patch mask is given);
            `"masked"`: it reuses the masked pass of the iBOT loss (cheaper,
            but a masked-out object can contradict its caption; a batch with
            `"contrastive_images"` is refused).
        **kwargs: standard `keras.Model` arguments.

    Example:
    ```python
    pretrainer = TIPSPretrainer(backbone, total_steps=1000, num_prototypes=1024)
    pretrainer.compile(optimizer=build_optimizer(OptimizerConfig(...)))
    pretrainer.fit(batches, steps_per_epoch=100, epochs=10)
    pretrainer.export_student("my_preset", preprocessor)
    ```
    """

    def __init__(
        self,
        backbone,
        total_steps,
        num_prototypes=65536,
        head_hidden_dim=2048,
        head_bottleneck_dim=256,
        head_num_layers=3,
        share_heads=False,
        distill_weight=1.0,
        mask_weight=2.0,
        koleo_weight=0.0,
        use_synthetic_captions=True,
        caption_weighting="available",
        teacher_momentum=(0.994, 1.0),
        teacher_temperature=(0.04, 0.07),
        teacher_temperature_warmup_steps=0,
        student_temperature=0.1,
        center_momentum=0.9,
        centering="centering",
        contrastive_view="unmasked",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if contrastive_view not in ("unmasked", "masked"):
            raise ValueError(
                "`contrastive_view` must be 'unmasked' or 'masked'; received "
                f"{contrastive_view!r}."
            )
        if caption_weighting not in ("available", "fixed"):
            raise ValueError(
                "`caption_weighting` must be 'available' or 'fixed'; received "
                f"{caption_weighting!r}."
            )
        if centering not in ("centering", "sinkhorn_knopp"):
            raise ValueError(
                "`centering` must be 'centering' or 'sinkhorn_knopp'; received "
                f"{centering!r}."
            )
        if int(total_steps) < 1:
            raise ValueError(f"`total_steps` must be >= 1; received {total_steps}.")
        self.backbone = backbone
        self.total_steps = int(total_steps)
        self.num_prototypes = int(num_prototypes)
        self.head_hidden_dim = int(head_hidden_dim)
        self.head_bottleneck_dim = int(head_bottleneck_dim)
        self.head_num_layers = int(head_num_layers)
        self.share_heads = bool(share_heads)
        self.distill_weight = float(distill_weight)
        self.mask_weight = float(mask_weight)
        self.koleo_weight = float(koleo_weight)
        self.use_synthetic_captions = bool(use_synthetic_captions)
        self.caption_weighting = caption_weighting
        self.teacher_momentum = tuple(float(v) for v in teacher_momentum)
        self.teacher_temperature = tuple(float(v) for v in teacher_temperature)
        self.teacher_temperature_warmup_steps = int(teacher_temperature_warmup_steps)
        self.student_temperature = float(student_temperature)
        self.center_momentum = float(center_momentum)
        self.centering = centering
        self.contrastive_view = contrastive_view

        width = backbone.vision_encoder.hidden_dim
        self.uses_teacher = self.distill_weight > 0 or self.mask_weight > 0
        self.student_heads = []
        self.teacher_heads = []
        self.teacher_vision_encoder = None
        if self.uses_teacher:
            self.dino_head = self._make_head("dino_head", width)
            self.ibot_head = (
                self.dino_head
                if self.share_heads
                else self._make_head("ibot_head", width)
            )
            self.student_heads = [self.dino_head]
            if not self.share_heads:
                self.student_heads.append(self.ibot_head)
            self.teacher_vision_encoder = clone_layer(
                backbone.vision_encoder, "teacher_vision_encoder"
            )
            self.teacher_heads = [
                clone_layer(head, f"teacher_{head.name}", (None, width))
                for head in self.student_heads
            ]
        # Step counter and centres: state the forward pass updates.
        self.step_counter = self.add_weight(
            name="step_counter",
            shape=(),
            dtype="int32",
            initializer="zeros",
            trainable=False,
        )
        self.dino_center = self.add_weight(
            name="dino_center",
            shape=(1, self.num_prototypes),
            initializer="zeros",
            trainable=False,
        )
        self.ibot_center = self.add_weight(
            name="ibot_center",
            shape=(1, self.num_prototypes),
            initializer="zeros",
            trainable=False,
        )
        self.trackers = {name: keras.metrics.Mean(name=name) for name in LOGGED}

    def _make_head(self, name, width):
        head = DINOHead(
            num_prototypes=self.num_prototypes,
            hidden_dim=self.head_hidden_dim,
            bottleneck_dim=self.head_bottleneck_dim,
            num_layers=self.head_num_layers,
            dtype=self.backbone.dtype_policy,
            name=name,
        )
        head.build((None, width))
        return head

    # --- Schedules ------------------------------------------------------

    def _schedules(self, step):
        momentum = cosine_schedule(
            step, self.teacher_momentum[0], self.teacher_momentum[1], self.total_steps
        )
        teacher_temperature = linear_warmup_then_constant(
            step,
            self.teacher_temperature[0],
            self.teacher_temperature[1],
            self.teacher_temperature_warmup_steps,
        )
        return momentum, teacher_temperature

    # --- Forward ----------------------------------------------------------

    def _teacher_probs(self, logits, center_variable, temperature):
        logits = ops.stop_gradient(ops.cast(logits, "float32"))
        if self.centering == "sinkhorn_knopp":
            flat = ops.reshape(logits, (-1, self.num_prototypes))
            probs = sinkhorn_knopp_teacher_probs(flat, temperature)
            probs = ops.reshape(probs, ops.shape(logits))
        else:
            probs = centered_teacher_probs(logits, center_variable, temperature)
        flat = ops.reshape(logits, (-1, self.num_prototypes))
        center_variable.assign(
            updated_center(center_variable, flat, self.center_momentum)
        )
        return ops.stop_gradient(probs)

    def call(self, batch, training=False):
        """Computes every loss term of one batch (and, when training, updates
        the teacher, the centres and the step counter).

        Returns:
            A dict of scalar tensors: the loss terms, `"loss"` (their weighted
            sum), accuracies, temperatures and schedule values.
        """
        _check_batch(batch, self.use_synthetic_captions)
        if self.distill_weight > 0 and "local_images" not in batch:
            raise ValueError(
                "Self-distillation needs local crops: the batch has no "
                "'local_images'. Set the pipeline's local_crop_count > 0, or "
                "distill_weight=0."
            )
        if self.contrastive_view == "masked" and "contrastive_images" in batch:
            raise ValueError(
                "The batch has 'contrastive_images' (a separate crop for the "
                "contrastive loss) but contrastive_view='masked' reuses the "
                "masked global crop. Use contrastive_view='unmasked', or set "
                "the pipeline's augmentation.contrastive_crop=None."
            )
        if self.mask_weight > 0 and "patch_mask" not in batch:
            raise ValueError(
                "Masked image modelling needs a 'patch_mask' in the batch; "
                "or set mask_weight=0."
            )
        student = self.backbone.vision_encoder
        text_encoder = self.backbone.text_encoder
        head = self.backbone.contrastive_head
        step = ops.cast(self.step_counter, "float32")
        momentum, teacher_temperature = self._schedules(step)
        if training:
            self.step_counter.assign_add(ops.cast(1, "int32"))
            if self.uses_teacher:
                ema_update(
                    [self.teacher_vision_encoder] + self.teacher_heads,
                    [student] + self.student_heads,
                    momentum,
                )

        images = batch["global_images"]
        batch_size = ops.shape(images)[0]
        patch_mask = batch.get("patch_mask")
        masked_outputs = student(images, patch_mask=patch_mask, training=training)
        if "contrastive_images" in batch:
            outputs = student(batch["contrastive_images"], training=training)
        elif self.contrastive_view == "unmasked" and patch_mask is not None:
            outputs = student(images, training=training)
        else:
            outputs = masked_outputs
        terms = {}

        # Contrastive: CLS1 <-> web caption, CLS2 <-> synthetic caption.
        web_valid = _valid(batch, "has_web", batch_size)
        web_text = text_encoder(batch["web_token_ids"], batch["web_padding_mask"])
        terms["contrastive_web"], terms["accuracy_web"] = contrastive_loss(
            outputs["cls_1"], web_text, head.temperature, web_valid
        )
        web_present = ops.cast(ops.any(web_valid), "float32")
        if self.use_synthetic_captions:
            synthetic_valid = _valid(batch, "has_synthetic", batch_size)
            synthetic_text = text_encoder(
                batch["synthetic_token_ids"], batch["synthetic_padding_mask"]
            )
            (
                terms["contrastive_synthetic"],
                terms["accuracy_synthetic"],
            ) = contrastive_loss(
                outputs["cls_2"],
                synthetic_text,
                head.synthetic_temperature,
                synthetic_valid,
            )
            synthetic_present = ops.cast(ops.any(synthetic_valid), "float32")
        else:
            terms["contrastive_synthetic"] = ops.zeros((), "float32")
            terms["accuracy_synthetic"] = ops.zeros((), "float32")
            synthetic_present = ops.zeros((), "float32")
        if self.caption_weighting == "fixed" and self.use_synthetic_captions:
            contrastive = 0.5 * (
                terms["contrastive_web"] + terms["contrastive_synthetic"]
            )
        else:
            contrastive = (
                terms["contrastive_web"] * web_present
                + terms["contrastive_synthetic"] * synthetic_present
            ) / ops.maximum(web_present + synthetic_present, 1.0)

        # Self-distillation and masked image modelling against the teacher.
        terms["distill"] = ops.zeros((), "float32")
        terms["mask"] = ops.zeros((), "float32")
        if self.uses_teacher:
            teacher_outputs = self.teacher_vision_encoder(images, training=False)
            teacher_dino, teacher_ibot = self._teacher_heads_of()
            if self.distill_weight > 0:
                teacher_probs = self._teacher_probs(
                    teacher_dino(teacher_outputs["cls_1"]),
                    self.dino_center,
                    teacher_temperature,
                )
                local = batch["local_images"]
                shape = ops.shape(local)
                num_local = shape[1]
                local_outputs = student(
                    ops.reshape(local, (-1, shape[2], shape[3], shape[4])),
                    training=training,
                )
                student_logits = ops.reshape(
                    self.dino_head(local_outputs["cls_1"]),
                    (batch_size, num_local, self.num_prototypes),
                )
                terms["distill"] = dino_cross_entropy(
                    student_logits,
                    ops.expand_dims(teacher_probs, 1),
                    self.student_temperature,
                )
            if self.mask_weight > 0:
                teacher_patch_probs = self._teacher_probs(
                    teacher_ibot(teacher_outputs["patches"]),
                    self.ibot_center,
                    teacher_temperature,
                )
                terms["mask"] = ibot_patch_loss(
                    self.ibot_head(masked_outputs["patches"]),
                    teacher_patch_probs,
                    patch_mask,
                    self.student_temperature,
                )
        terms["koleo"] = (
            koleo_loss(ops.cast(outputs["cls_1"], "float32"))
            if self.koleo_weight > 0
            else ops.zeros((), "float32")
        )
        terms = {k: ops.cast(v, "float32") for k, v in terms.items()}
        terms["loss"] = (
            contrastive
            + self.distill_weight * terms["distill"]
            + self.mask_weight * terms["mask"]
            + self.koleo_weight * terms["koleo"]
        )
        terms["temperature_web"] = head.temperature
        terms["temperature_synthetic"] = head.synthetic_temperature
        terms["teacher_momentum"] = momentum
        terms["teacher_temperature"] = teacher_temperature
        return terms

    def _teacher_heads_of(self):
        dino = self.teacher_heads[0]
        ibot = dino if self.share_heads else self.teacher_heads[1]
        return dino, ibot

    # --- Keras training hooks ---------------------------------------------

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        return y_pred["loss"]

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        for name, tracker in self.trackers.items():
            tracker.update_state(y_pred[name])
        logs = {"loss": self._loss_tracker.result()} if self._loss_tracker else {}
        logs.update({name: t.result() for name, t in self.trackers.items()})
        return logs

    @property
    def metrics(self):
        metrics = list(super().metrics)
        return metrics + [t for t in self.trackers.values() if t not in metrics]

    # --- Export -----------------------------------------------------------

    def export_student(self, preset_dir, preprocessor=None):
        """Saves the student as a `TIPSModel` preset and returns the model."""
        from keras_tips.models.tips_model import TIPSModel

        model = TIPSModel(self.backbone, preprocessor)
        model.save_to_preset(preset_dir)
        return model

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "backbone": keras.layers.serialize(self.backbone),
                "total_steps": self.total_steps,
                "num_prototypes": self.num_prototypes,
                "head_hidden_dim": self.head_hidden_dim,
                "head_bottleneck_dim": self.head_bottleneck_dim,
                "head_num_layers": self.head_num_layers,
                "share_heads": self.share_heads,
                "distill_weight": self.distill_weight,
                "mask_weight": self.mask_weight,
                "koleo_weight": self.koleo_weight,
                "use_synthetic_captions": self.use_synthetic_captions,
                "caption_weighting": self.caption_weighting,
                "teacher_momentum": self.teacher_momentum,
                "teacher_temperature": self.teacher_temperature,
                "teacher_temperature_warmup_steps": self.teacher_temperature_warmup_steps,
                "student_temperature": self.student_temperature,
                "center_momentum": self.center_momentum,
                "centering": self.centering,
                "contrastive_view": self.contrastive_view,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config["backbone"], dict):
            config["backbone"] = keras.layers.deserialize(config["backbone"])
        return cls(**config)


def _valid(batch, key, batch_size):
    if key in batch:
        return ops.cast(batch[key], "bool")
    return ops.ones((batch_size,), "bool")


def _check_batch(batch, needs_synthetic):
    if not isinstance(batch, dict):
        raise ValueError(
            "TIPSPretrainer expects each batch to be a dict (see the class "
            f"docstring); received {type(batch).__name__}."
        )
    required = ["global_images", "web_token_ids", "web_padding_mask"]
    if needs_synthetic:
        required += ["synthetic_token_ids", "synthetic_padding_mask"]
    missing = [key for key in required if key not in batch]
    if missing:
        raise ValueError(
            f"The batch is missing {missing}; it has {sorted(batch)}."
        )
