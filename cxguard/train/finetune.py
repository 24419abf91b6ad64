"""Fine-tunes MiniLM on all labels of both speakers at once before export.

Frozen MiniLM embeddings put "your payment was received" next to "we can split your
payment" and capped the agent heads at F1 ≈ 0.7–0.9 on held-out turns; a short multi-label
fine-tune (BCE over the 15 labels, undecided labels masked) separates them. The classifier
used here is thrown away: the logistic heads are refitted afterwards on the exported int8
encoder's embeddings, so heads and thresholds match exactly what the runtime computes.
Deterministic for a given seed and thread count (fixed to 2).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cxguard.train.corpus import Example
from cxguard.train.labels import GROUPS

ALL_LABELS = [label for group in GROUPS.values() for label in group]
EPOCHS = 2
BATCH = 32
LR_ENCODER = 4e-5
LR_HEAD = 2e-3
SCALE = 20.0  # logits = SCALE * W·unit_embedding: unit vectors need a temperature
MAX_CUSTOMER_PUBLIC = 2500  # seeded sample of public customer turns (all labels)
MAX_AGENT_PUBLIC = 1500  # real agent turns other people wrote (SGD system turns, Bitext answers)
FROZEN_LAYERS = 3  # embeddings and the lowest layers stay as pre-trained: faster on 2 cores


def training_set(examples: Sequence[Example], seed: int) -> list[Example]:
    """The fine-tuning subset of the train split: every positive and every turn we wrote,
    plus a seeded sample of the plentiful public negatives."""
    rng = np.random.default_rng(seed)
    train = [e for e in examples if e.split == "train"]
    other = [e for e in train if e.speaker == "customer" and e.origin == "public"]
    agent_pub = [e for e in train if e.speaker == "agent" and e.origin == "public"]
    capped = {id(e) for e in other + agent_pub}
    rest = [e for e in train if id(e) not in capped]
    keep_o = sorted(rng.permutation(len(other))[:MAX_CUSTOMER_PUBLIC])
    keep_a = sorted(rng.permutation(len(agent_pub))[:MAX_AGENT_PUBLIC])
    return rest + [other[i] for i in keep_o] + [agent_pub[i] for i in keep_a]


def finetune(
    examples: Sequence[Example],
    seed: int,
    max_tokens: int,
    on_step: Callable[[], None] | None = None,
) -> Any:
    """Returns the fine-tuned ``transformers`` BertModel (eval mode)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModel  # type: ignore[import-not-found, unused-ignore]

    from cxguard.train.encoder import base_model_dir

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    src = base_model_dir()
    bert = AutoModel.from_pretrained(str(src), attn_implementation="eager")
    for module in [bert.embeddings, *bert.encoder.layer[:FROZEN_LAYERS]]:
        for p in module.parameters():
            p.requires_grad_(False)
    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    tok.enable_truncation(max_tokens)
    tok.no_padding()

    data = training_set(examples, seed)
    idx = {label: i for i, label in enumerate(ALL_LABELS)}
    y = np.zeros((len(data), len(ALL_LABELS)), dtype=np.float32)
    mask = np.zeros_like(y)
    for r, e in enumerate(data):
        for label, v in e.labels.items():
            if v is not None:
                y[r, idx[label]] = v
                mask[r, idx[label]] = 1.0
    pos = (y * mask).sum(0)
    neg = ((1 - y) * mask).sum(0)
    pos_weight = torch.tensor(np.clip(np.sqrt(neg / np.maximum(pos, 1)), 1.0, 10.0))
    encoded = [enc.ids for enc in tok.encode_batch([e.text for e in data])]

    head = torch.nn.Linear(384, len(ALL_LABELS))
    opt = torch.optim.AdamW(
        [
            {"params": [p for p in bert.parameters() if p.requires_grad], "lr": LR_ENCODER},
            {"params": head.parameters(), "lr": LR_HEAD},
        ],
        weight_decay=0.01,
    )
    steps = EPOCHS * math.ceil(len(data) / BATCH)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / (0.06 * steps)) * max(0.0, 1 - s / steps)
    )
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight, reduction="none")
    gen = np.random.default_rng(seed)
    bert.train()
    for _ in range(EPOCHS):
        for rows in _batches(gen, [len(ids) for ids in encoded]):
            width = max(len(encoded[r]) for r in rows)
            ids = torch.zeros((len(rows), width), dtype=torch.long)
            am = torch.zeros_like(ids)
            for k, r in enumerate(rows):
                ids[k, : len(encoded[r])] = torch.tensor(encoded[r])
                am[k, : len(encoded[r])] = 1
            hidden = bert(input_ids=ids, attention_mask=am, token_type_ids=torch.zeros_like(ids))
            m = am.unsqueeze(-1).float()
            emb = (hidden.last_hidden_state * m).sum(1) / m.sum(1).clamp(min=1e-9)
            emb = torch.nn.functional.normalize(emb, p=2.0, dim=1)
            logits = SCALE * head(emb)
            mk = torch.from_numpy(mask[rows])
            loss = (loss_fn(logits, torch.from_numpy(y[rows])) * mk).sum() / mk.sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(bert.parameters(), 1.0)
            opt.step()
            sched.step()
            if on_step is not None:
                on_step()
    return bert.eval()


def _batches(gen: np.random.Generator, lengths: Sequence[int]) -> list[np.ndarray]:
    """Shuffled batches of similar length (less padding), in shuffled order."""
    order = gen.permutation(len(lengths))
    out: list[np.ndarray] = []
    chunk = BATCH * 20
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        out += [np.asarray(part[k : k + BATCH]) for k in range(0, len(part), BATCH)]
    return [out[i] for i in gen.permutation(len(out))]


def n_steps(examples: Sequence[Example], seed: int) -> int:
    return EPOCHS * math.ceil(len(training_set(examples, seed)) / BATCH)
