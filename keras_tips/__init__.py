"""keras_tips: TIPS (Text-Image Pretraining with Spatial awareness) for Keras 3."""

__version__ = "0.1.0"
