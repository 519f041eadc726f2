"""Inference over files on disk, at any scale.

- `image_batches`: batches of model inputs read from image files, skipping
  and counting the files that do not decode.
- `embed`: image and text embeddings streamed into memory-mapped `.npy`
  files (`keras-tips embed`), and image features in memory for evaluations.
- `classify`: zero-shot classification of image files (`keras-tips
  classify`).

This package re-exports nothing, so that importing one of its modules (as
`keras_tips.evaluation` does) does not import the others.
"""
