"""Evaluation of TIPS features: zero-shot, retrieval, k-NN, probes, segmentation.

The metric functions take NumPy arrays (features already computed, e.g. with
`model.encode_images` / `model.encode_texts`) or, for building text
classifiers, a text-encoding callable, so they do not depend on the model
classes. Metrics are computed with NumPy and are identical on every Keras
backend; only the Keras-trained linear probes use Keras.

The evaluations of data on disk take a model (anything with `TIPSModel`'s
`encode_images` and `encode_texts`) and a folder or file in a layout
researchers already have: class folders (`image_folder`), Karpathy-split
caption JSON or a JSONL index (`caption_retrieval`), ADE20K-style images and
label maps (`segmentation_folder`); `shapes_benchmark` scores the embedded
shapes scenes. `prompts` holds CLIP's ImageNet prompt ensembles.
"""

from keras_tips.evaluation.caption_retrieval import evaluate_caption_retrieval
from keras_tips.evaluation.caption_retrieval import read_captioned_images
from keras_tips.evaluation.image_folder import evaluate_image_folder
from keras_tips.evaluation.knn import evaluate_knn
from keras_tips.evaluation.knn import knn_votes
from keras_tips.evaluation.knn import nearest_neighbors
from keras_tips.evaluation.metrics import confusion_matrix
from keras_tips.evaluation.metrics import depth_abs_rel
from keras_tips.evaluation.metrics import depth_delta
from keras_tips.evaluation.metrics import depth_metrics
from keras_tips.evaluation.metrics import depth_rmse
from keras_tips.evaluation.metrics import iou_from_confusion
from keras_tips.evaluation.metrics import mean_iou
from keras_tips.evaluation.metrics import pixel_accuracy
from keras_tips.evaluation.metrics import segmentation_scores
from keras_tips.evaluation.probes import LinearProbe
from keras_tips.evaluation.probes import evaluate_depth_probe
from keras_tips.evaluation.probes import evaluate_segmentation_probe
from keras_tips.evaluation.probes import fit_depth_probe
from keras_tips.evaluation.probes import fit_segmentation_probe
from keras_tips.evaluation.prompts import load_templates
from keras_tips.evaluation.prompts import read_class_names
from keras_tips.evaluation.retrieval import evaluate_retrieval
from keras_tips.evaluation.retrieval import retrieval_ranks
from keras_tips.evaluation.segmentation_folder import evaluate_segmentation_folder
from keras_tips.evaluation.utils import bilinear_resize
from keras_tips.evaluation.utils import l2_normalize
from keras_tips.evaluation.utils import patches_to_grid
from keras_tips.evaluation.zero_shot import build_zero_shot_classifier
from keras_tips.evaluation.zero_shot import evaluate_zero_shot
from keras_tips.evaluation.zero_shot import top_k_accuracy
from keras_tips.evaluation.zero_shot import zero_shot_predict
from keras_tips.evaluation.zero_shot_segmentation import evaluate_zero_shot_segmentation
from keras_tips.evaluation.zero_shot_segmentation import similarity_maps
from keras_tips.evaluation.zero_shot_segmentation import zero_shot_segment
