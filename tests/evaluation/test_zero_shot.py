import numpy as np
import pytest

from keras_tips.evaluation.zero_shot import build_zero_shot_classifier
from keras_tips.evaluation.zero_shot import evaluate_zero_shot
from keras_tips.evaluation.zero_shot import top_k_accuracy
from keras_tips.evaluation.zero_shot import zero_shot_predict

VECTORS = {
    "a cat": [3.0, 0.0],  # raw norm 3: normalised before averaging
    "the cat": [0.0, 1.0],
    "a dog": [0.0, -2.0],
    "the dog": [0.0, -5.0],
}


class FakeTextEncoder:
    def __init__(self):
        self.calls = []

    def __call__(self, texts):
        self.calls.append(list(texts))
        return np.array([VECTORS[t] for t in texts])


def test_classifier_is_normalised_mean_of_normalised_templates():
    encoder = FakeTextEncoder()
    classifier = build_zero_shot_classifier(
        encoder, ["cat", "dog"], ["a {}", "the {}"], batch_size=3
    )
    # cat: mean([1, 0], [0, 1]) = [0.5, 0.5] -> [1/sqrt2, 1/sqrt2].
    # dog: mean([0, -1], [0, -1]) -> [0, -1].
    s = 1 / np.sqrt(2)
    np.testing.assert_allclose(classifier, [[s, s], [0.0, -1.0]], atol=1e-6)
    assert [len(c) for c in encoder.calls] == [3, 1]
    assert encoder.calls[0] == ["a cat", "the cat", "a dog"]


def test_classifier_accepts_callable_templates_and_rejects_bad_ones():
    classifier = build_zero_shot_classifier(FakeTextEncoder(), ["cat"], lambda n: f"a {n}")
    np.testing.assert_allclose(classifier, [[1.0, 0.0]], atol=1e-6)
    with pytest.raises(ValueError, match="placeholder"):
        build_zero_shot_classifier(FakeTextEncoder(), ["cat"], ["a photo"])
    with pytest.raises(ValueError, match="expected"):
        build_zero_shot_classifier(lambda t: np.zeros((1, 2)), ["cat", "dog"], ["a {}"])


def test_zero_shot_predict_is_cosine_over_temperature():
    images = np.array([[2.0, 0.0], [1.0, 1.0]])
    classifier = np.array([[1.0, 0.0], [0.0, 1.0]])
    s = 1 / np.sqrt(2)
    np.testing.assert_allclose(
        zero_shot_predict(images, classifier), [[1.0, 0.0], [s, s]], atol=1e-6
    )
    np.testing.assert_allclose(
        zero_shot_predict(images, classifier, temperature=0.5), [[2.0, 0.0], [2 * s, 2 * s]],
        atol=1e-6,
    )
    with pytest.raises(ValueError):
        zero_shot_predict(images, np.ones((2, 3)))


def test_top_k_accuracy_hand_example():
    logits = np.array(
        [
            [0.1, 0.7, 0.2, 0.0],  # label 1: rank 0
            [0.5, 0.4, 0.3, 0.2],  # label 2: rank 2
            [0.1, 0.2, 0.3, 0.4],  # label 0: rank 3
        ]
    )
    labels = [1, 2, 0]
    result = top_k_accuracy(logits, labels, ks=(1, 2, 3, 4))
    assert result == {1: pytest.approx(1 / 3), 2: pytest.approx(1 / 3),
                      3: pytest.approx(2 / 3), 4: pytest.approx(1.0)}


def test_top_k_accuracy_caps_k_and_counts_ties_against():
    logits = np.array([[0.2, 0.5, 0.3]])
    # k = 5 > C = 3 is capped: the label is always within the top 3.
    assert top_k_accuracy(logits, [0], ks=(5,)) == {5: 1.0}
    # All-equal logits: never correct at k < C.
    tied = np.zeros((2, 3))
    assert top_k_accuracy(tied, [0, 2], ks=(1, 2, 3)) == {1: 0.0, 2: 0.0, 3: 1.0}
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        top_k_accuracy(logits, [3])
    with pytest.raises(ValueError, match="k must be"):
        top_k_accuracy(logits, [0], ks=(0,))


def test_evaluate_zero_shot_reports_each_cls_token():
    classifier = np.eye(3)
    features = {
        "cls_1": np.array([[1.0, 0.1, 0.0], [0.0, 0.0, 1.0]]),  # both right
        # Label 0 is third for the first image, label 2 second for the other.
        "cls_2": np.array([[0.0, 1.0, 0.2], [1.0, 0.0, 0.5]]),
        "patches": np.zeros((2, 4, 3)),
    }
    metrics = evaluate_zero_shot(features, [0, 2], classifier, ks=(1, 2))
    assert metrics == {
        "cls_1/top1": 1.0,
        "cls_1/top2": 1.0,
        "cls_2/top1": 0.0,
        "cls_2/top2": 0.5,
    }
    assert list(evaluate_zero_shot({"cls_2": features["cls_2"]}, [0, 2], classifier)) == [
        "cls_2/top1",
        "cls_2/top5",
    ]
    with pytest.raises(ValueError, match="none of"):
        evaluate_zero_shot({"patches": features["patches"]}, [0, 2], classifier)
