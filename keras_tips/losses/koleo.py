"""KoLeo regulariser (Kozachenko-Leonenko differential entropy estimator).

On L2-normalised features x_1..x_B of one batch,

    L = - 1/B sum_i log( min_{j != i} ||x_i - x_j|| + eps )

Pushing nearest neighbours apart spreads the features uniformly over the
sphere (Sablayrolles et al., 2019; used by DINOv2 on the CLS token).
"""

from keras import ops

from keras_tips.layers.contrastive_head import l2_normalize
from keras_tips.losses.contrastive import arange_like


def koleo_loss(features, epsilon=1e-8):
    """KoLeo loss of a batch of features.

    The nearest neighbour of each feature (itself excluded) is chosen without
    gradient; the distance to it is then recomputed from the difference of
    the two vectors, which is accurate for close neighbours and
    differentiable. Identical features give distance 0 and the finite loss
    `-log(eps)`.

    Args:
        features: (B, D) tensor (normalised inside; zero rows stay zero).
        epsilon: float added to the distance inside the log.

    Returns:
        float32 scalar; 0 for a batch of fewer than 2 features.

    Example:
    ```python
    loss = koleo_loss(cls_1)  # (B, D) CLS tokens of the batch
    ```
    """
    x = l2_normalize(ops.cast(features, "float32"))
    squared_norms = ops.sum(ops.square(x), axis=-1)
    squared_distances = (
        squared_norms[:, None]
        + squared_norms[None, :]
        - 2.0 * ops.matmul(x, ops.transpose(x))
    )
    index = arange_like(squared_norms)
    is_self = ops.equal(index[:, None], index[None, :])
    squared_distances = ops.where(is_self, float("inf"), squared_distances)
    nearest = ops.stop_gradient(ops.argmin(squared_distances, axis=-1))
    neighbours = ops.take(x, nearest, axis=0)
    squared = ops.sum(ops.square(x - neighbours), axis=-1)
    # sqrt has an infinite slope at 0: floor the argument (identical features
    # then have zero gradient instead of NaN).
    distances = ops.sqrt(ops.maximum(squared, 1e-24))
    distances = ops.where(squared > 1e-24, distances, 0.0)
    loss = -ops.mean(ops.log(distances + epsilon))
    has_neighbours = ops.sum(ops.ones_like(squared_norms)) > 1.0
    return ops.where(has_neighbours, loss, 0.0)
