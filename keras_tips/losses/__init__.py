"""The TIPS objective, one loss a file:

    loss = contrastive + alpha * distill + beta * mask + gamma * koleo

* `contrastive.py`: symmetric InfoNCE of CLS1 with web captions and CLS2
  with synthetic captions (valid-pair masks), and their average;
* `dino.py`: DINO self-distillation of CLS1, local crops against the
  global crop;
* `ibot.py`: iBOT masked image modelling on patch tokens;
* `koleo.py`: the KoLeo regulariser;
* `cross_entropy.py`: the teacher-student cross-entropy of DINO and iBOT;
* `teacher_targets.py`: teacher probabilities (centering, Sinkhorn-Knopp)
  and the centre update.

`keras_tips.training.pretrainer.TIPSPretrainer` puts them together.
"""

from keras_tips.losses.contrastive import contrastive_loss
from keras_tips.losses.contrastive import mean_over_caption_types
from keras_tips.losses.cross_entropy import soft_cross_entropy
from keras_tips.losses.dino import dino_loss
from keras_tips.losses.ibot import ibot_patch_loss
from keras_tips.losses.koleo import koleo_loss
from keras_tips.losses.teacher_targets import centered_teacher_probs
from keras_tips.losses.teacher_targets import sinkhorn_knopp_teacher_probs
from keras_tips.losses.teacher_targets import updated_center
