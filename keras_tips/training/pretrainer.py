"""`TIPSPretrainer`: the full TIPS objective as a Keras `train_step`."""

import keras
from keras import ops

from keras_tips.losses.contrastive import contrastive_loss
from keras_tips.losses.contrastive import mean_over_caption_types
from keras_tips.losses.dino import dino_loss
from keras_tips.losses.ibot import AVERAGE_OVER
from keras_tips.losses.ibot import MASK_LOSS_TOKENS
from keras_tips.losses.ibot import ibot_patch_loss
from keras_tips.losses.ibot import loss_token_indices
from keras_tips.losses.ibot import patch_loss_weights
from keras_tips.losses.ibot import take_tokens
from keras_tips.losses.koleo import koleo_loss
from keras_tips.losses.teacher_targets import centered_teacher_probs
from keras_tips.losses.teacher_targets import sinkhorn_knopp_teacher_probs
from keras_tips.losses.teacher_targets import updated_center
from keras_tips.training.diagnostics import diagnostic_names
from keras_tips.training.diagnostics import target_diagnostics
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
TEACHERS = ("ema", "heads_only")
TEACHER_PASSES = ("separate", "shared")
LOGGED = LOSS_TERMS + (
    "accuracy_web",
    "accuracy_synthetic",
    "temperature_web",
    "temperature_synthetic",
    "teacher_momentum",
    "teacher_temperature",
)
# Whether self-distillation is alive (see `keras_tips.training.diagnostics`):
# teacher entropy against ln K, prototypes in use, student-teacher agreement
# and centre norm, for the CLS (`distill_*`) and patch (`mask_*`) targets.
DIAGNOSTICS = diagnostic_names("distill") + diagnostic_names("mask")
LOGGED = LOGGED + DIAGNOSTICS


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
    patch tokens the student saw masked (the teacher sees the unmasked crop),
    or with `mask_loss_tokens="all"` TIPSv2's iBOT++ on every patch token.
    The iBOT heads run only on the tokens whose loss is taken: with
    `max_masked_patches` set, each image's masked tokens are gathered to that
    static count first (as DINOv2 gathers to `n_masked_patches`), so neither
    head computes (B, N, K) logits; the head logits are float32 under any
    dtype policy.
    By default the contrastive loss sees the unmasked global crop (so a caption
    never describes an object the student cannot see); `contrastive_view=
    "masked"` reuses the masked pass instead, saving one student forward.
    Every term is one function of `keras_tips.losses`.

    The teacher (image tower + heads, or with `teacher="heads_only"` the
    heads alone: TIPSv2's head-only EMA, the image tower being the student's
    own under stop-gradient) is an exponential moving average of the
    student, never touched by the optimizer. It is updated at the start of
    each training step, before it is used, from the student weights that the
    previous step produced; that is the usual "update after the optimizer"
    order, and it is written as plain variable assignments inside the forward
    pass, which Keras carries through JAX's stateless train step, TensorFlow
    graphs and PyTorch alike. The step counter, teacher weights and centres
    are Keras variables saved with the model; they change only in training
    (`fit`, `train_on_batch`), never in `evaluate`, `predict` or a call.

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
        self_distillation_start_step: int. The distillation and masking
            terms join the loss at this step (0: from the first step).
            Before it they are still computed and logged, the teacher and
            the centres still follow the student, but they send no
            gradient. A small model starts with nearly the same CLS token
            for every image, so the teacher's targets carry no information
            and the two terms pull the student towards image-independent
            outputs; a contrastive-only start lets the features diversify
            first (see `keras_tips.training.diagnostics`).
        max_masked_patches: int or None. Static bound on the masked patches
            of one image: the iBOT heads (student and teacher) run on that
            many gathered tokens per image instead of all N. A recipe sets it
            from its mask ratio (the masks hold exactly
            `round(ratio * N)` patches); tokens beyond the bound would be
            left out of the loss. None runs the heads on all N tokens (with
            the loss weighted by the mask). Not used under
            `mask_loss_tokens="all"`, where every token is a loss token.
        ibot_averaging: `"masked_images"` (mean over the images with loss
            tokens; iBOT) or `"all_images"` (sum over images divided by the
            batch size; DINOv2, an effective weight of beta times the
            fraction of masked images). See `keras_tips.losses.ibot`.
        mask_loss_tokens: `"masked"` (iBOT: the loss on the masked patches)
            or `"all"` (iBOT++ of TIPSv2: on every patch, the student's
            masked view against the teacher's full view).
        visible_token_weight: float >= 0. Under `"all"`, the weight of a
            visible patch relative to a masked one (1.0: one uniform mean
            over all N patches per image).
        teacher: `"ema"` (an EMA copy of the image tower and heads) or
            `"heads_only"` (TIPSv2: the student's image tower under
            stop-gradient, EMA copies of the heads only; no teacher tower
            is held).
        teacher_pass: with `teacher="heads_only"`, where the teacher's
            encoder outputs come from. `"separate"`: one more pass of the
            student's tower over the unmasked global crop in inference mode
            (no drop-path), under stop-gradient: the inputs an EMA teacher
            sees. `"shared"`: the unmasked student pass the contrastive loss
            already runs (needs `contrastive_view="unmasked"`), under
            stop-gradient: one forward fewer, but its targets see the
            student's drop-path.
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
        self_distillation_start_step=0,
        max_masked_patches=None,
        ibot_averaging="masked_images",
        mask_loss_tokens="masked",
        visible_token_weight=1.0,
        teacher="ema",
        teacher_pass="separate",
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value, allowed in (
            ("ibot_averaging", ibot_averaging, AVERAGE_OVER),
            ("mask_loss_tokens", mask_loss_tokens, MASK_LOSS_TOKENS),
            ("teacher", teacher, TEACHERS),
            ("teacher_pass", teacher_pass, TEACHER_PASSES),
        ):
            if value not in allowed:
                raise ValueError(
                    f"`{name}` must be one of {allowed}; received {value!r}."
                )
        if max_masked_patches is not None and int(max_masked_patches) < 1:
            raise ValueError(
                "`max_masked_patches` must be a positive int (or None: the "
                f"heads see every patch); received {max_masked_patches!r}."
            )
        if float(visible_token_weight) < 0:
            raise ValueError(
                "`visible_token_weight` must be >= 0; received "
                f"{visible_token_weight!r}."
            )
        if (
            teacher == "heads_only"
            and teacher_pass == "shared"
            and contrastive_view != "unmasked"
        ):
            raise ValueError(
                'teacher_pass="shared" reuses the unmasked student pass of the '
                'contrastive loss, which contrastive_view="masked" does not '
                'run: use teacher_pass="separate" or contrastive_view='
                '"unmasked".'
            )
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
        if int(self_distillation_start_step) < 0:
            raise ValueError(
                "`self_distillation_start_step` must be >= 0; received "
                f"{self_distillation_start_step}."
            )
        if int(self_distillation_start_step) >= int(total_steps) and (
            distill_weight > 0 or mask_weight > 0
        ):
            raise ValueError(
                f"`self_distillation_start_step` ({self_distillation_start_step}) "
                f"is not below `total_steps` ({total_steps}): the distillation "
                "and masking terms would never train. Lower it, or set "
                "distill_weight=0 and mask_weight=0."
            )
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
        self.self_distillation_start_step = int(self_distillation_start_step)
        self.max_masked_patches = (
            None if max_masked_patches is None else int(max_masked_patches)
        )
        self.ibot_averaging = ibot_averaging
        self.mask_loss_tokens = mask_loss_tokens
        self.visible_token_weight = float(visible_token_weight)
        self.teacher = teacher
        self.teacher_pass = teacher_pass

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
            if self.teacher == "ema":
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

    # --- The objective ----------------------------------------------------

    def call(self, batch, training=False):
        """The TIPS objective of one batch:

            loss = contrastive + α · distill + β · mask + γ · koleo

        where α and β count from `self_distillation_start_step` on (zero
        before it).

        State moves in three visible lines, all only when training: the step
        counter and the EMA teacher advance first (the teacher is updated
        before it is used, from the student that the previous step produced),
        and the centres move towards this batch's teacher logits once the
        targets are computed.

        Returns:
            A dict of scalar tensors: the loss terms, `"loss"` (their weighted
            sum), accuracies, temperatures and schedule values.
        """
        self._check_batch(batch)
        step = ops.cast(self.step_counter, "float32")
        momentum, teacher_temperature = self._schedules(step)
        if training:
            self.step_counter.assign_add(ops.cast(1, "int32"))
            self._update_teacher(momentum)

        student = self._student_forward(batch, training)
        contrastive, terms = self._contrastive(batch, student["contrastive"])
        terms["distill"] = ops.zeros((), "float32")
        terms["mask"] = ops.zeros((), "float32")
        student_logits, teacher_probs, loss_tokens = {}, {}, None
        if self.uses_teacher:
            loss_tokens = self._loss_tokens(batch)
            teacher_logits = self._teacher_forward(batch, student, loss_tokens)
            # The iBOT centre and Sinkhorn-Knopp see the loss tokens only.
            samples = {"dino": None}
            if loss_tokens is not None:
                samples["ibot"] = loss_tokens["weights"] > 0
            teacher_probs = {
                name: self._teacher_probs(
                    name, logits, teacher_temperature, samples[name]
                )
                for name, logits in teacher_logits.items()
            }
            if training:
                self._update_centers(teacher_logits, samples)
            if self.distill_weight > 0:
                student_logits["dino"] = self._local_crops_forward(
                    batch["local_images"], training
                )
                terms["distill"] = dino_loss(
                    student_logits["dino"],
                    teacher_probs["dino"],
                    self.student_temperature,
                )
            if self.mask_weight > 0:
                student_logits["ibot"] = self.ibot_head(
                    _at(student["masked"]["patches"], loss_tokens)
                )
                terms["mask"] = ibot_patch_loss(
                    student_logits["ibot"],
                    teacher_probs["ibot"],
                    loss_tokens["weights"],
                    self.student_temperature,
                    self.ibot_averaging,
                )
        terms["koleo"] = (
            koleo_loss(student["contrastive"]["cls_1"])
            if self.koleo_weight > 0
            else ops.zeros((), "float32")
        )
        terms.update(
            self._diagnostics(
                student_logits,
                teacher_probs,
                None if loss_tokens is None else loss_tokens["weights"] > 0,
            )
        )
        started = ops.cast(step >= self.self_distillation_start_step, "float32")
        terms["loss"] = (
            contrastive
            + started
            * (self.distill_weight * terms["distill"] + self.mask_weight * terms["mask"])
            + self.koleo_weight * terms["koleo"]
        )
        head = self.backbone.contrastive_head
        terms["temperature_web"] = head.temperature
        terms["temperature_synthetic"] = head.synthetic_temperature
        terms["teacher_momentum"] = momentum
        terms["teacher_temperature"] = teacher_temperature
        return terms

    def _contrastive(self, batch, image_outputs):
        """The image-text term: InfoNCE of CLS1 against the web captions and
        of CLS2 against the synthetic ones (each with its own learned
        temperature), averaged over caption types. Runs the text tower.

        Returns:
            `(contrastive, logged)`: the term, and the loss and accuracy of
            each caption type (zero for synthetic captions when not in use).
        """
        head = self.backbone.contrastive_head
        batch_size = ops.shape(batch["global_images"])[0]
        alignments = [("web", "cls_1", head.temperature)]
        if self.use_synthetic_captions:
            alignments.append(("synthetic", "cls_2", head.synthetic_temperature))
        logged, losses, present = {}, [], []
        for caption, cls_token, temperature in alignments:
            valid = _valid(batch, f"has_{caption}", batch_size)
            texts = self.backbone.text_encoder(
                batch[f"{caption}_token_ids"], batch[f"{caption}_padding_mask"]
            )
            loss, accuracy = contrastive_loss(
                image_outputs[cls_token], texts, temperature, valid
            )
            logged[f"contrastive_{caption}"] = loss
            logged[f"accuracy_{caption}"] = accuracy
            losses.append(loss)
            present.append(ops.cast(ops.any(valid), "float32"))
        if not self.use_synthetic_captions:
            # Logged as 0, so that every run logs the same values.
            logged["contrastive_synthetic"] = ops.zeros((), "float32")
            logged["accuracy_synthetic"] = ops.zeros((), "float32")
        contrastive = mean_over_caption_types(
            losses, present, self.caption_weighting
        )
        return contrastive, logged

    # --- Forward passes ---------------------------------------------------

    def _student_forward(self, batch, training):
        """The student's passes over the global crop.

        Returns:
            `{"masked": ..., "contrastive": ...}` encoder outputs: the pass
            with the patch mask (iBOT), and the one the contrastive loss and
            KoLeo see: the batch's `"contrastive_images"` when it has them
            (the crop paired with the captions), else the unmasked global
            crop (one more pass when a mask is given) or, with
            `contrastive_view="masked"`, the masked one.
        """
        student = self.backbone.vision_encoder
        images = batch["global_images"]
        patch_mask = batch.get("patch_mask")
        masked = student(images, patch_mask=patch_mask, training=training)
        if "contrastive_images" in batch:
            contrastive = student(batch["contrastive_images"], training=training)
            return {"masked": masked, "contrastive": contrastive}
        if self.contrastive_view == "unmasked" and patch_mask is not None:
            unmasked = student(images, training=training)
            return {"masked": masked, "contrastive": unmasked}
        return {"masked": masked, "contrastive": masked}

    def _local_crops_forward(self, local_images, training):
        """The student's DINO-head logits of CLS1 of every local crop.

        Args:
            local_images: (B, L, S, S, 3).

        Returns:
            (B, L, K) logits.
        """
        shape = ops.shape(local_images)
        outputs = self.backbone.vision_encoder(
            ops.reshape(local_images, (-1, shape[2], shape[3], shape[4])),
            training=training,
        )
        return ops.reshape(
            self.dino_head(outputs["cls_1"]),
            (shape[0], shape[1], self.num_prototypes),
        )

    def _teacher_forward(self, batch, student, loss_tokens):
        """The teacher's head logits of the (unmasked) global crop.

        Args:
            batch: the batch.
            student: the student's encoder outputs (`_student_forward`).
            loss_tokens: `_loss_tokens(batch)`.

        Returns:
            A dict with, for the objectives in use, `"dino"`: (B, K) logits
            of CLS1 through the teacher's DINO head, and `"ibot"`: (B, M, K)
            logits of the loss tokens through its iBOT head.
        """
        if self.teacher == "ema":
            outputs = self.teacher_vision_encoder(
                batch["global_images"], training=False
            )
        elif self.teacher_pass == "shared":
            outputs = student["contrastive"]
        else:
            outputs = self.backbone.vision_encoder(
                batch["global_images"], training=False
            )
        # The head-only teacher's tower is the student's: no gradient.
        outputs = {
            name: ops.stop_gradient(outputs[name]) for name in ("cls_1", "patches")
        }
        dino_head = self.teacher_heads[0]
        ibot_head = dino_head if self.share_heads else self.teacher_heads[1]
        logits = {}
        if self.distill_weight > 0:
            logits["dino"] = dino_head(outputs["cls_1"])
        if self.mask_weight > 0:
            logits["ibot"] = ibot_head(_at(outputs["patches"], loss_tokens))
        return logits

    def _loss_tokens(self, batch):
        """Which patch tokens the iBOT loss is taken on, and their weights.

        Returns:
            `{"indices": ..., "weights": ...}`: int32 (B, M) positions of the
            gathered loss tokens (None: all N, in order) and their float32
            (B, M) weights (`keras_tips.losses.ibot`); M is
            `max_masked_patches` under `mask_loss_tokens="masked"` when set,
            else N. None when the iBOT loss is off.
        """
        if self.mask_weight == 0:
            return None
        weights = patch_loss_weights(
            batch["patch_mask"], self.mask_loss_tokens, self.visible_token_weight
        )
        if self.mask_loss_tokens == "all" or self.max_masked_patches is None:
            return {"indices": None, "weights": weights}
        indices, weights = loss_token_indices(weights, self.max_masked_patches)
        return {"indices": indices, "weights": weights}

    # --- Teacher targets and state ---------------------------------------

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

    def _centers(self):
        """The centre variable of each objective, by teacher-logits name."""
        return {"dino": self.dino_center, "ibot": self.ibot_center}

    def _teacher_probs(self, name, logits, temperature, sample_mask=None):
        """Teacher probabilities of `name`'s logits by `centering`
        (Sinkhorn-Knopp over the samples of `sample_mask`)."""
        if self.centering == "sinkhorn_knopp":
            return sinkhorn_knopp_teacher_probs(
                logits, temperature, sample_mask=sample_mask
            )
        return centered_teacher_probs(logits, self._centers()[name], temperature)

    def _update_centers(self, teacher_logits, samples):
        """Moves each centre towards the mean of its teacher logits over
        the samples that count (`samples[name]`, None: all)."""
        centers = self._centers()
        for name, logits in teacher_logits.items():
            center = centers[name]
            center.assign(
                updated_center(
                    center, logits, self.center_momentum, samples[name]
                )
            )

    def _update_teacher(self, momentum):
        """teacher <- momentum * teacher + (1 - momentum) * student."""
        if self.uses_teacher:
            students = list(self.student_heads)
            teachers = list(self.teacher_heads)
            if self.teacher_vision_encoder is not None:
                students.insert(0, self.backbone.vision_encoder)
                teachers.insert(0, self.teacher_vision_encoder)
            ema_update(teachers, students, momentum)

    def _diagnostics(self, student_logits, teacher_probs, loss_token_mask):
        """Whether self-distillation is alive (`DIAGNOSTICS`): for each term
        in use, its teacher targets and the student logits it trains; zeros
        for a term that is off, so that every run logs the same values."""
        logged = {name: ops.zeros((), "float32") for name in DIAGNOSTICS}
        if "dino" in student_logits:
            logged.update(
                target_diagnostics(
                    "distill",
                    student_logits["dino"],
                    ops.expand_dims(teacher_probs["dino"], 1),
                    self.dino_center,
                )
            )
        if "ibot" in student_logits:
            logged.update(
                target_diagnostics(
                    "mask",
                    student_logits["ibot"],
                    teacher_probs["ibot"],
                    self.ibot_center,
                    mask=loss_token_mask,
                    teacher_mask=loss_token_mask,
                )
            )
        return logged

    def _check_batch(self, batch):
        if not isinstance(batch, dict):
            raise ValueError(
                "TIPSPretrainer expects each batch to be a dict (see the class "
                f"docstring); received {type(batch).__name__}."
            )
        required = ["global_images", "web_token_ids", "web_padding_mask"]
        if self.use_synthetic_captions:
            required += ["synthetic_token_ids", "synthetic_padding_mask"]
        missing = [key for key in required if key not in batch]
        if missing:
            raise ValueError(
                f"The batch is missing {missing}; it has {sorted(batch)}."
            )
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
        if (
            self.uses_teacher
            and self.teacher == "heads_only"
            and self.teacher_pass == "shared"
            and "contrastive_images" in batch
        ):
            raise ValueError(
                "The batch has 'contrastive_images' (a separate crop for the "
                "contrastive loss) but teacher_pass='shared' takes the "
                "teacher's targets from that pass, which would not be the "
                "crop the masked student sees. Use teacher_pass='separate', "
                "or set the pipeline's augmentation.contrastive_crop=None."
            )
        if self.mask_weight > 0 and "patch_mask" not in batch:
            raise ValueError(
                "Masked image modelling needs a 'patch_mask' in the batch; "
                "or set mask_weight=0."
            )

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
                "self_distillation_start_step": self.self_distillation_start_step,
                "max_masked_patches": self.max_masked_patches,
                "ibot_averaging": self.ibot_averaging,
                "mask_loss_tokens": self.mask_loss_tokens,
                "visible_token_weight": self.visible_token_weight,
                "teacher": self.teacher,
                "teacher_pass": self.teacher_pass,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config["backbone"], dict):
            config["backbone"] = keras.layers.deserialize(config["backbone"])
        return cls(**config)


def _at(tokens, loss_tokens):
    """The (B, N, D) `tokens` at the loss tokens' positions (B, M, D)."""
    if loss_tokens["indices"] is None:
        return tokens
    return take_tokens(tokens, loss_tokens["indices"])


def _valid(batch, key, batch_size):
    if key in batch:
        return ops.cast(batch[key], "bool")
    return ops.ones((batch_size,), "bool")

