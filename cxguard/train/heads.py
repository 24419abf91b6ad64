"""Per-speaker multi-label heads: one logistic regression per label over the frozen
embedding, stored together as one ONNX graph ``sigmoid(embedding @ W + b)``.

Per label, the regularisation strength C and the decision threshold are chosen on the
validation split (best Matthews correlation); the test split is never looked at here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

C_GRID = (2.0, 16.0)


@dataclass(frozen=True)
class Head:
    label: str
    weights: NDArray[np.float32]  # [dim]
    bias: float
    threshold: float
    c: float
    val_mcc: float


def sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-z))


def best_threshold(scores: NDArray[np.float64], y: NDArray[np.int_]) -> tuple[float, float]:
    """The cut with the best Matthews correlation (symmetric in the two classes, so the
    majority label ``customer.other`` is not pushed to a near-zero threshold the way F1
    pushes it), placed midway between the last kept and the first dropped score."""
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], y[order].astype(np.float64)
    tp = np.cumsum(t)
    fp = np.cumsum(1 - t)
    pos, neg = t.sum(), (1 - t).sum()
    fn, tn = pos - tp, neg - fp
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    mcc = np.where(denom > 0, (tp * tn - fp * fn) / np.where(denom > 0, denom, 1.0), 0.0)
    # Only cut where the score changes, so ties fall on one side.
    mcc = np.where(np.append(s[:-1] > s[1:], True), mcc, -1.0)
    k = int(np.argmax(mcc))
    nxt = s[k + 1] if k + 1 < len(s) else 0.0
    return float((s[k] + nxt) / 2.0), float(mcc[k])


def fit_head(
    label: str,
    x_train: NDArray[np.float32],
    y_train: NDArray[np.int_],
    x_val: NDArray[np.float32],
    y_val: NDArray[np.int_],
    seed: int,
) -> Head:
    from sklearn.linear_model import LogisticRegression

    best: Head | None = None
    for c in C_GRID:
        model = LogisticRegression(
            C=c, class_weight="balanced", max_iter=3000, random_state=seed, tol=1e-6
        )
        model.fit(x_train, y_train)
        w = model.coef_[0].astype(np.float32)
        b = float(model.intercept_[0])
        p = sigmoid(x_val.astype(np.float64) @ w + b)
        thr, mcc = best_threshold(p, y_val)
        if best is None or mcc > best.val_mcc + 1e-9:
            best = Head(label, w, b, thr, c, mcc)
    assert best is not None
    return best


def fit_group(
    labels: Sequence[str],
    x_train: NDArray[np.float32],
    y_train: Mapping[str, NDArray[np.float64]],
    x_val: NDArray[np.float32],
    y_val: Mapping[str, NDArray[np.float64]],
    seed: int,
) -> list[Head]:
    """``y_*[label]`` holds 1/0 and NaN for undecided examples, which are left out."""
    heads = []
    for label in labels:
        mt, mv = ~np.isnan(y_train[label]), ~np.isnan(y_val[label])
        heads.append(
            fit_head(
                label,
                x_train[mt],
                y_train[label][mt].astype(int),
                x_val[mv],
                y_val[label][mv].astype(int),
                seed,
            )
        )
    return heads


def write_onnx(heads: Sequence[Head], path: Path, model_id: str) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.stack([h.weights for h in heads], axis=1).astype(np.float32)  # [dim, labels]
    b = np.asarray([h.bias for h in heads], dtype=np.float32)
    dim, n = w.shape
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["embedding", "W"], ["logits_raw"]),
            helper.make_node("Add", ["logits_raw", "b"], ["logits"]),
            helper.make_node("Sigmoid", ["logits"], ["scores"]),
        ],
        model_id,
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", n])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="cxguard-train"
    )
    model.ir_version = 8
    helper.set_model_props(model, {"labels": ",".join(h.label for h in heads)})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
