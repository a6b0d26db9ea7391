"""`llmint8 eval MODEL_DIR --text FILE`: the original model vs int8 with outlier decomposition
(threshold 6.0) vs plain absmax int8 (threshold 0), on the lines of a text file.

- Causal LM (the config names a ``*ForCausalLM``): perplexity over all tokens; the difference to
  the original with its standard error from the per-line paired differences of mean token
  log-loss (delta method: ``SE(Δppl) ≈ ppl · SE(Δ loss)``).
- Otherwise (an encoder): mean-pooled, normalised embeddings; the cosine similarity of each line's
  embedding to the original's: mean, its standard error, and the minimum.
Models are loaded one at a time.
"""

from __future__ import annotations

import gc
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from tqdm.auto import tqdm

from .._optional import require
from ..loading import check_torch_file
from . import UsageError
from .calibrate import MAX_TOKENS, default_device, load_model, text_lines
from .checkpoints import is_torch_file, open_checkpoint

VARIANTS = [("original", None), ("int8, threshold 6.0", 6.0), ("int8, threshold 0 (absmax)", 0.0)]


@dataclass
class Row:
    name: str
    value: float
    difference: Optional[float] = None
    standard_error: Optional[float] = None
    minimum: Optional[float] = None


@dataclass
class EvalResult:
    metric: str
    lines: int
    tokens: int
    rows: list[Row]

    def table(self) -> str:
        causal = self.metric == "perplexity"
        head = ["model", self.metric, "Δ vs original", "± SE"] + ([] if causal else ["min"])
        body = []
        for row in self.rows:
            cells = [row.name, f"{row.value:.4f}"]
            cells.append("" if row.difference is None else f"{row.difference:+.3g}")
            cells.append("" if row.standard_error is None else f"{row.standard_error:.2g}")
            if not causal:
                cells.append("" if row.minimum is None else f"{row.minimum:.4f}")
            body.append(cells)
        widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                           enumerate(zip(r, widths))) for r in [head, *body]]  # fmt: skip
        lines.insert(1, "  ".join("-" * w for w in widths))
        what = f"{self.lines} lines, {self.tokens} tokens"
        return f"{self.metric} ({what})\n" + "\n".join(lines)


def evaluate(
    model_dir: os.PathLike,
    text: os.PathLike,
    device: Optional[str] = None,
    max_lines: Optional[int] = None,
    progress: bool = True,
) -> EvalResult:
    """`llmint8 eval`: the floating-point model in `model_dir` (a transformers directory) against
    int8 at threshold 6.0 and plain absmax int8, on the lines of the UTF-8 file `text` (at most
    `max_lines`), on `device` (default: the first GPU, else the CPU). Returns the rows of
    `EvalResult.table()`: perplexity for a causal LM, else embedding cosine similarity, each with
    the difference to the original and its standard error. `progress`: bars on stderr.

    Raises `UsageError` (or `FormatError`, `MissingDependencyError`) for input it cannot use."""
    transformers = require("transformers", "llmint8 eval")

    checkpoint = open_checkpoint(model_dir)
    config = checkpoint.config
    if config is None:
        raise UsageError(f"{model_dir}: not a transformers model directory (no config.json)")
    if "quantization_config" in config:
        raise UsageError(f"{model_dir}: already quantized; eval compares a floating-point model")
    for file in checkpoint.files:
        if is_torch_file(file):
            check_torch_file(file)  # a refused pickle is one line here, not a loader's traceback
    text = Path(text)
    if not text.is_file():
        raise UsageError(f"{text}: no such text file")
    lines = text_lines(text)[:max_lines]
    device = default_device(device)
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint.path)
    causal = any(a.endswith("ForCausalLM") for a in config.get("architectures") or [])
    run = _token_losses if causal else _embeddings
    outputs = {}
    for name, threshold in VARIANTS:
        kwargs = {}
        if threshold is not None:
            from ..integrations.transformers import Int8Config

            kwargs["quantization_config"] = Int8Config(threshold=threshold)
        model = load_model(checkpoint.path, device, **kwargs)
        outputs[name] = run(model, tokenizer, lines, device, name if progress else None)
        del model
        gc.collect()
    if causal:
        return _perplexity_result(outputs, len(lines))
    return _similarity_result(outputs, tokenizer, lines)


@torch.no_grad()
def _token_losses(model, tokenizer, lines, device, progress) -> list[tuple[float, int]]:
    """(summed negative log-likelihood, predicted tokens) per line."""
    out = []
    for line in tqdm(lines, desc=progress, unit="line", disable=progress is None):
        ids = tokenizer(line, return_tensors="pt", truncation=True, max_length=MAX_TOKENS)
        ids = ids["input_ids"].to(device)
        if ids.shape[1] < 2:
            out.append((0.0, 0))
            continue
        logits = model(ids).logits[:, :-1].float()
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="sum"
        )
        out.append((float(loss), ids.shape[1] - 1))
    return out


@torch.no_grad()
def _embeddings(model, tokenizer, lines, device, progress) -> torch.Tensor:
    from ..demo import embed

    return embed(model, tokenizer, lines, device, progress=progress).cpu()


def _perplexity_result(outputs, count) -> EvalResult:
    original = outputs["original"]
    tokens = sum(n for _, n in original)
    if tokens == 0:
        raise UsageError("the text gives no line of two or more tokens")
    rows = []
    base_ppl = math.exp(sum(loss for loss, _ in original) / tokens)
    for name, losses in outputs.items():
        ppl = math.exp(sum(loss for loss, _ in losses) / tokens)
        if name == "original":
            rows.append(Row(name, ppl))
            continue
        diffs = [(a - b) / n for (a, n), (b, _) in zip(losses, original) if n]
        mean = sum(diffs) / len(diffs)
        var = sum((d - mean) ** 2 for d in diffs) / max(1, len(diffs) - 1)
        rows.append(Row(name, ppl, ppl - base_ppl, base_ppl * math.sqrt(var / len(diffs))))
    return EvalResult("perplexity", count, tokens, rows)


def _similarity_result(outputs, tokenizer, lines) -> EvalResult:
    original = outputs["original"]
    rows = [Row("original", 1.0)]
    for name, embeddings in outputs.items():
        if name == "original":
            continue
        cosine = (embeddings * original).sum(-1).double()
        n = cosine.numel()
        se = float(cosine.std() / math.sqrt(n)) if n > 1 else 0.0
        mean = float(cosine.mean())
        rows.append(Row(name, mean, mean - 1.0, se, float(cosine.min())))
    tokens = sum(len(tokenizer(line, truncation=True, max_length=MAX_TOKENS)["input_ids"])
                 for line in lines)  # fmt: skip
    return EvalResult("cosine similarity to the original", len(lines), tokens, rows)
