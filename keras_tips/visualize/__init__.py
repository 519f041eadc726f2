"""Visualisation of TIPS features and results as uint8 images (PIL only).

Every function returns a uint8 NumPy array and, where it takes a `path`,
writes a PNG.
"""

from keras_tips.visualize.curves import plot_curves
from keras_tips.visualize.dense_maps import depth_image
from keras_tips.visualize.dense_maps import label_map_image
from keras_tips.visualize.dense_maps import normals_image
from keras_tips.visualize.dense_maps import scale_bar_panel
from keras_tips.visualize.images import append_panel
from keras_tips.visualize.images import image_grid
from keras_tips.visualize.images import load_png
from keras_tips.visualize.images import resize_image
from keras_tips.visualize.images import save_png
from keras_tips.visualize.images import to_rgb
from keras_tips.visualize.images import to_uint8
from keras_tips.visualize.overlays import color_palette
from keras_tips.visualize.overlays import colorize_mask
from keras_tips.visualize.overlays import heatmap
from keras_tips.visualize.overlays import legend_panel
from keras_tips.visualize.overlays import nearest_resize
from keras_tips.visualize.overlays import segmentation_overlay
from keras_tips.visualize.overlays import similarity_overlay
from keras_tips.visualize.pca import pca_image
from keras_tips.visualize.pca import principal_components
