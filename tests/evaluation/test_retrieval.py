import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keras_tips.evaluation.retrieval import evaluate_retrieval
from keras_tips.evaluation.retrieval import retrieval_ranks

# Images are the standard basis, texts unit vectors, so the similarity
# matrix (texts x images) is the text matrix itself:
#   t0 = [0.8, 0.6, 0.0]  image 0 -> rank 0
#   t1 = [0.6, 0.8, 0.0]  image 1 -> rank 0
#   t2 = [0.0, 0.8, 0.6]  image 2 -> rank 1 (image 1 scores 0.8 > 0.6)
# Image -> text (columns): image 0 [.8, .6, 0] -> t0 first; image 1
# [.6, .8, .8] -> t1 ties with t2, a tie counts against: rank 1; image 2
# [0, 0, .6] -> t2 first.
IMAGES = np.eye(3)
TEXTS = np.array([[0.8, 0.6, 0.0], [0.6, 0.8, 0.0], [0.0, 0.8, 0.6]])


def test_recall_on_a_hand_computed_3x3_example():
    metrics = evaluate_retrieval(IMAGES, TEXTS, [0, 1, 2], ks=(1, 2))
    assert metrics["text_to_image/recall@1"] == pytest.approx(2 / 3)
    assert metrics["text_to_image/recall@2"] == pytest.approx(1.0)
    assert metrics["image_to_text/recall@1"] == pytest.approx(2 / 3)
    assert metrics["image_to_text/recall@2"] == pytest.approx(1.0)
    assert metrics["mean_recall"] == pytest.approx((2 / 3 + 1 + 2 / 3 + 1) / 4)
    image_ranks, text_ranks = retrieval_ranks(IMAGES, TEXTS, [0, 1, 2])
    np.testing.assert_array_equal(text_ranks, [0, 0, 1])
    np.testing.assert_array_equal(image_ranks, [0, 1, 0])


def test_several_captions_per_image():
    images = np.eye(2)
    # Captions 0, 1 are image 0's; 2, 3 image 1's.
    texts = np.array([[0.1, 0.9], [0.9, 0.1], [0.6, 0.4], [0.0, 1.0]])
    # Image 0 scores (after text normalisation) rank texts 1, 2, 0, 3: its
    # best caption (1) is first although caption 0 is behind caption 2.
    # Image 1 ranks texts 3, 0, 2, 1: caption 3 first.
    image_ranks, text_ranks = retrieval_ranks(images, texts, [0, 0, 1, 1])
    np.testing.assert_array_equal(image_ranks, [0, 0])
    # Text -> image: t0 prefers image 1 (wrong), t1 image 0, t2 image 0
    # (wrong), t3 image 1.
    np.testing.assert_array_equal(text_ranks, [1, 0, 1, 0])
    metrics = evaluate_retrieval(images, texts, [0, 0, 1, 1], ks=(1,))
    assert metrics["image_to_text/recall@1"] == 1.0
    assert metrics["text_to_image/recall@1"] == 0.5
    # Other captions of the same image are not counted against it, but
    # incorrect ones are: give image 0 only caption 0 -> texts 1, 2 ahead.
    image_ranks, _ = retrieval_ranks(images, texts, [0, 1, 1, 1])
    assert image_ranks[0] == 2


def test_images_without_captions_are_left_out_of_image_to_text():
    image_ranks, _ = retrieval_ranks(IMAGES, TEXTS[:2], [0, 1])
    assert image_ranks[2] == -1
    metrics = evaluate_retrieval(IMAGES, TEXTS[:2], [0, 1], ks=(1,))
    # Image 1: t1 (0.8) beats t0 (0.6) -> both remaining images correct.
    assert metrics["image_to_text/recall@1"] == 1.0


def test_input_errors():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        evaluate_retrieval(IMAGES, TEXTS, [0, 1, 3])
    with pytest.raises(ValueError, match="int array"):
        evaluate_retrieval(IMAGES, TEXTS, [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="Expected"):
        evaluate_retrieval(IMAGES, np.ones((3, 4)), [0, 1, 2])


@settings(max_examples=25, deadline=None)
@given(
    num_images=st.integers(1, 6),
    captions=st.integers(1, 3),
    seed=st.integers(0, 2**16),
    batch_size=st.integers(1, 7),
)
def test_ranks_match_a_sorting_reference(num_images, captions, seed, batch_size):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(num_images, 5))
    ids = np.repeat(np.arange(num_images), captions)
    texts = rng.normal(size=(ids.size, 5))
    image_ranks, text_ranks = retrieval_ranks(images, texts, ids, batch_size=batch_size)
    norm_i = images / np.linalg.norm(images, axis=1, keepdims=True)
    norm_t = texts / np.linalg.norm(texts, axis=1, keepdims=True)
    sims = norm_i @ norm_t.T
    for t in range(ids.size):
        order = np.argsort(-sims[:, t])
        assert text_ranks[t] == list(order).index(ids[t])
    for i in range(num_images):
        order = list(np.argsort(-sims[i]))
        assert image_ranks[i] == min(order.index(t) for t in np.nonzero(ids == i)[0])
