"""The bundled encoder computes its integer matmuls exactly on every CPU (train/exact_int8.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from cxguard.train.exact_int8 import exact_matmuls

ROOT = Path(__file__).resolve().parents[1]


def _matmul_integer(b: np.ndarray, b_zp: np.ndarray) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b", "a_zp", "b_zp"], ["y"], name="mm")],
        "mm",
        [
            helper.make_tensor_value_info("a", TensorProto.UINT8, [None, b.shape[0]]),
            helper.make_tensor_value_info("a_zp", TensorProto.UINT8, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [None, b.shape[1]])],
        [
            helper.make_tensor("b", TensorProto.INT8, b.shape, b.flatten().tolist()),
            helper.make_tensor("b_zp", TensorProto.INT8, b_zp.shape, b_zp.tolist()),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, a: np.ndarray, a_zp: int) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = session.run(None, {"a": a, "a_zp": np.array(a_zp, dtype=np.uint8)})[0]
    return np.asarray(out)


def test_rewritten_matmul_gives_the_exact_integer_sums() -> None:
    rng = np.random.default_rng(0)
    k, n = 384, 96
    # Large activations times large weights: pairs of products beyond int16, where the AVX2
    # kernel saturates. Per-channel weight zero points, as quantize_dynamic writes them.
    a = rng.integers(200, 256, size=(8, k), dtype=np.uint8)
    b = rng.choice(np.array([-128, -127, 126, 127], dtype=np.int8), size=(k, n))
    b_zp = rng.integers(-3, 4, size=n, dtype=np.int8)
    exact = (a.astype(np.int64) - 7) @ (b.astype(np.int64) - b_zp.astype(np.int64))
    model = _matmul_integer(b, b_zp)
    assert exact_matmuls(model) == 1
    onnx.checker.check_model(model)
    got = _run(model, a, 7)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, exact)


def test_the_bundled_encoder_has_no_saturating_integer_matmul() -> None:
    model = onnx.load(str(ROOT / "models" / "minilm-l6-v2-int8.onnx"))
    ops = {node.op_type for node in model.graph.node}
    assert "MatMulInteger" not in ops
    assert "DynamicQuantizeLinear" in ops  # still the int8 encoder the heads were fitted on
