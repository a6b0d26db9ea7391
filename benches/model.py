"""Whole-model benchmark: a Llama-style decoder built from a transformers config (random fp16
weights, ≈1B and ≈7B parameters), fp16 vs llmint8 (threshold 6) vs bitsandbytes Linear8bitLt
(threshold 6, where installed), llmint8 with LLM.int8()'s arithmetic forced (`llmint8 int8`;
the default `llmint8` takes weight-only int8 for few tokens), and llmint8 with q/k/v and gate/up
each multiplied as one product (`llmint8 fused`: `llmint8.fuse_siblings`): weight memory and
peak memory, prefill tokens/s (batch 1, 2048 tokens) and decode ms/token at batch 1, 8 and 32:
eager; with CUDA graphs through torch.compile (mode="reduce-overhead" over a static KV cache:
`graphs`); and the same compiled step (inductor's fused kernels, no CUDA graphs of its own)
captured once as one CUDA graph and replayed (`graph replay`: the GPU's time without
torch.compile's host work per call, i.e. its guards over every parameter, the way serving
engines run decode).

    python benches/model.py [--sizes 1b 7b] [--profiles random realistic] [--split 2]
                            [--variants llmint8 ...] [--modes eager compiled replay] [--out F]

Profiles (the activations' outliers decide how much of LLM.int8() runs in floating point):
`random` is the model as initialised (its down_proj inputs hold thousands of columns above 6 at
2048 tokens); `realistic` plants what the LLM.int8() paper describes of trained models, a few
systematic outlier features: 6 hidden dimensions of the residual stream ×20 (the two norms'
weights at those dimensions), and MLP intermediate activations of moderate size (up_proj ×0.25),
so that q/k/v/gate/up see about 6 outlier columns and down_proj few. A second table gives, per
projection type, the outlier columns its inputs hold (min / median / max over layers) at 1, 32
and 2048 tokens, so a reader can tell one profile from the other.

`--split N` adds a row for the llmint8 model split layer by layer across N GPUs by accelerate's
device map (`dispatch_model`; each layer quantized on its own GPU), with the memory per GPU.

Decode: a 128-token prompt, then 32 tokens one at a time (greedy); the median over steps after
4 warm-up steps. Like the table of time per token in the LLM.int8() announcement, one row per
model and variant.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from types import SimpleNamespace

import torch
import transformers
from torch import nn

import llmint8

SIZES = {
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
               num_attention_heads=32, num_key_value_heads=4),
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
               num_attention_heads=32, num_key_value_heads=32),
}  # fmt: skip
PREFILL_TOKENS = 2048
PROMPT, DECODE_STEPS, WARMUP = 128, 32, 4
BATCHES = (1, 8, 32)
PROFILES_SEEN: dict = {}  # (size, profile) -> outlier_columns() of the llmint8 model


def split_across_gpus(config, gpus: int) -> nn.Module:
    """Built on the CPU, converted, then placed layer by layer on `gpus` GPUs by accelerate (an
    even share of the int8 weights each); each Int8Params is quantized on its GPU as it moves."""
    import accelerate

    model = transformers.LlamaForCausalLM(config).half().eval()
    llmint8.replace_linear(model, threshold=6.0)
    int8_bytes = sum(p.numel() for p in model.parameters())  # ≈ 1 byte per weight once int8
    share = f"{int(1.3 * int8_bytes / gpus / 2**20)}MiB"
    device_map = accelerate.infer_auto_device_map(
        model, max_memory={i: share for i in range(gpus)},
        no_split_module_classes=["LlamaDecoderLayer"],
    )  # fmt: skip
    return accelerate.dispatch_model(model, device_map)


PLANTED_FEATURES = 6
PLANTED_SCALE = 20.0
UP_PROJ_SCALE = 0.25


@torch.no_grad()
def apply_profile(model: nn.Module, profile: str) -> None:
    """`realistic`: a few systematic outlier features (see the module doc); `random`: as built."""
    if profile == "random":
        return
    generator = torch.Generator().manual_seed(0)
    hidden = model.config.hidden_size
    features = torch.randperm(hidden, generator=generator)[:PLANTED_FEATURES]
    for layer in model.model.layers:
        for norm in (layer.input_layernorm, layer.post_attention_layernorm):
            norm.weight[features.to(norm.weight.device)] *= PLANTED_SCALE
        layer.mlp.up_proj.weight.mul_(UP_PROJ_SCALE)


def build(size: str, variant: str, profile: str = "random") -> nn.Module:
    config = transformers.LlamaConfig(
        vocab_size=32000, max_position_embeddings=4096, **SIZES[size]
    )  # fmt: skip
    if variant.startswith("llmint8 split"):
        return split_across_gpus(config, int(variant.rsplit("×", 1)[1]))
    with torch.device("cuda"):
        model = transformers.LlamaForCausalLM(config).half().eval()
    apply_profile(model, profile)
    if variant in ("llmint8", "llmint8 int8", "llmint8 fused"):
        arithmetic = "int8" if variant == "llmint8 int8" else "auto"
        llmint8.replace_linear(model, threshold=6.0, arithmetic=arithmetic)
        model.cuda()  # quantizes every layer in place; the fp16 weights are freed
        if variant == "llmint8 fused":
            llmint8.fuse_siblings(model)
    elif variant == "bitsandbytes":
        import bitsandbytes as bnb

        for name, module in list(model.named_modules()):
            if isinstance(module, nn.Linear) and not name.endswith("lm_head"):
                layer = bnb.nn.Linear8bitLt(module.in_features, module.out_features,
                                            bias=module.bias is not None,
                                            has_fp16_weights=False, threshold=6.0)  # fmt: skip
                layer.load_state_dict(module.state_dict())
                parent, _, attr = name.rpartition(".")
                setattr(model.get_submodule(parent), attr, layer.cuda())
    torch.cuda.empty_cache()
    return model


def cuda_seconds(fn) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000


@torch.no_grad()
def prefill_tokens_per_s(model) -> float:
    ids = torch.randint(0, 32000, (1, PREFILL_TOKENS), device="cuda")
    model(ids)  # warm-up (kernel compilation)
    return PREFILL_TOKENS / statistics.median(cuda_seconds(lambda: model(ids)) for _ in range(3))


DECODE_MODES = ("eager", "compiled", "replay")


def replayed_step(model, cache, token: torch.Tensor):
    """The decode step compiled by torch.compile without CUDA graphs of its own (inductor's fused
    kernels), captured once as one CUDA graph over static token and position tensors and replayed
    per token, as serving engines run it: the step costs its GPU time plus one replay's launch,
    none of torch.compile's per-call host work (guards, CUDA-graph tree bookkeeping). Same
    signature as `model.forward` for the decode loop."""
    static_token = token.clone()
    static_position = torch.tensor([PROMPT], device="cuda")
    compiled = torch.compile(model.forward, fullgraph=True)

    def forward():
        return compiled(static_token, past_key_values=cache, cache_position=static_position,
                        use_cache=True).logits  # fmt: skip

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):  # compilation and lazy initialisation outside the capture
            forward()  # (the cache slot it writes is rewritten by the first replay)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_logits = forward()

    def step(token, past_key_values, cache_position, use_cache):
        static_token.copy_(token)
        static_position.copy_(cache_position)
        graph.replay()
        return SimpleNamespace(logits=static_logits)

    return step


@torch.no_grad()
def decode_ms_per_token(model, batch: int, mode: str) -> float:
    """One of DECODE_MODES: `eager` (a dynamic cache), `compiled` (torch.compile
    mode="reduce-overhead" over a static cache: CUDA graphs, plus torch.compile's host work per
    call) or `replay` (`replayed_step`: the compiled kernels in one CUDA graph)."""
    ids = torch.randint(0, 32000, (batch, PROMPT), device="cuda")
    if mode == "eager":
        cache = transformers.DynamicCache()
        step = model.forward
    else:
        cache = transformers.StaticCache(config=model.config, max_batch_size=batch,
                                         max_cache_len=PROMPT + DECODE_STEPS + WARMUP + 8,
                                         device="cuda", dtype=torch.float16)  # fmt: skip
    position = torch.arange(PROMPT, device="cuda")
    out = model(ids, past_key_values=cache, cache_position=position, use_cache=True)
    token = out.logits[:, -1:].argmax(-1)
    if mode == "compiled":
        step = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
    elif mode == "replay":
        step = replayed_step(model, cache, token)
    times = []
    for i in range(WARMUP + DECODE_STEPS):
        position = torch.tensor([PROMPT + i], device="cuda")

        def one_step(position=position):
            nonlocal token
            logits = step(token, past_key_values=cache, cache_position=position,
                          use_cache=True).logits  # fmt: skip
            token = logits[:, -1:].argmax(-1)

        seconds = cuda_seconds(one_step)
        if i >= WARMUP:
            times.append(seconds * 1000)
    return statistics.median(times)


PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
COUNT_TOKENS = (1, 32, PREFILL_TOKENS)


@torch.no_grad()
def outlier_columns(model: nn.Module, threshold: float = 6.0) -> dict[str, dict[int, list[int]]]:
    """Per projection type and number of tokens, the outlier columns (any |x| >= threshold) of
    each layer's input, over one forward of random token ids."""
    counts: dict[str, dict[int, list[int]]] = {
        p: {t: [] for t in COUNT_TOKENS} for p in PROJECTIONS
    }
    tokens = [0]

    def hook(kind):
        def count(module, args):
            x = args[0].reshape(-1, args[0].shape[-1])
            counts[kind][tokens[0]].append(int((x.abs() >= threshold).any(dim=0).sum()))

        return count

    handles = [
        module.register_forward_pre_hook(hook(name.rsplit(".", 1)[-1]))
        for name, module in model.named_modules()
        if name.rsplit(".", 1)[-1] in PROJECTIONS
    ]
    try:
        for n in COUNT_TOKENS:
            tokens[0] = n
            model(torch.randint(0, 32000, (1, n), device="cuda"))
    finally:
        for handle in handles:
            handle.remove()
    return counts


def profile_row(size: str, profile: str, counts) -> str:
    cells = [size, profile]
    for kind in PROJECTIONS:
        parts = []
        for n in COUNT_TOKENS:
            values = sorted(counts[kind][n])
            parts.append(f"{values[0]}/{values[len(values) // 2]}/{values[-1]}" if values else "—")
        cells.append(" · ".join(parts))
    return "| " + " | ".join(cells) + " |"


def measure(
    size: str, variant: str, profile: str = "random", modes: tuple[str, ...] = DECODE_MODES
) -> list[str]:
    start = time.monotonic()
    model = build(size, variant, profile)
    gpus = range(torch.cuda.device_count())
    weights = sum(torch.cuda.memory_allocated(i) for i in gpus)
    per_gpu = " / ".join(f"{torch.cuda.memory_allocated(i) / 2**30:.2f}" for i in gpus)
    for i in gpus:
        torch.cuda.reset_peak_memory_stats(i)  # the peak of inference, not of building
    print(f"{size} {variant}: built in {time.monotonic() - start:.0f} s", file=sys.stderr)
    prefill = prefill_tokens_per_s(model)
    cells = [size, profile, variant, f"{weights / 2**30:.2f} ({per_gpu})", f"{prefill:,.0f}"]
    split = variant.startswith("llmint8 split")
    for mode in DECODE_MODES:
        for batch in BATCHES:
            if mode not in modes:
                cells.append("—")  # left out (--modes)
                continue
            if mode != "eager" and split:
                cells.append("—")  # CUDA graphs of one device; the split runs eager
                continue
            try:
                cells.append(f"{decode_ms_per_token(model, batch, mode):.2f}")
            except Exception as err:  # reported, the table goes on
                print(f"{size} {variant} batch {batch} {mode}: {err!r}", file=sys.stderr)
                cells.append("n/a")
            torch._dynamo.reset()
    cells.insert(4, f"{sum(torch.cuda.max_memory_allocated(i) for i in gpus) / 2**30:.2f}")
    if variant == "llmint8":
        PROFILES_SEEN[(size, profile)] = outlier_columns(model)
    del model
    gc.collect()
    torch.cuda.empty_cache()
    return cells


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--profiles", nargs="+", default=["realistic", "random"],
                        choices=["realistic", "random"])  # fmt: skip
    parser.add_argument("--split", type=int, default=0, metavar="N",
                        help="also the llmint8 model split across N GPUs (device_map)")  # fmt: skip
    parser.add_argument(
        "--variants", nargs="+", default=None, metavar="NAME",
        help="only these: fp16, llmint8, int8, fused, split, bitsandbytes",
    )  # fmt: skip
    parser.add_argument("--modes", nargs="+", default=None, choices=DECODE_MODES,
                        help="only these decode modes (the others' cells read —)")  # fmt: skip
    parser.add_argument("--out", default=None, help="also write the table (markdown) here")
    args = parser.parse_args(argv)
    modes = tuple(args.modes or DECODE_MODES)
    if args.split and args.split > torch.cuda.device_count():
        parser.error(f"--split {args.split}: only {torch.cuda.device_count()} GPUs are visible")
    variants = ["fp16", "llmint8", "llmint8 int8", "llmint8 fused"]
    variants += [f"llmint8 split×{args.split}"] if args.split else []
    try:
        import bitsandbytes  # noqa: F401

        variants.append("bitsandbytes")
    except ImportError:
        print("bitsandbytes is not installed: its rows are left out", file=sys.stderr)
    if args.variants:
        known = {"fp16", "llmint8", "int8", "fused", "split", "bitsandbytes"}
        unknown = set(args.variants) - known
        if unknown:
            parser.error(f"--variants: unknown {sorted(unknown)}")
        short = {v: "split" if "split" in v else v.removeprefix("llmint8 ") for v in variants}
        short["llmint8"] = "llmint8"
        variants = [v for v in variants if short[v] in args.variants]
    decode = [f"decode ms/token b={b}" for b in BATCHES]
    header = ["model", "profile", "variant", "weights GiB (per GPU)", "peak GiB",
              "prefill tok/s (b=1, 2048)", *decode, *[f"{d} (graphs)" for d in decode],
              *[f"{d} (graph replay)" for d in decode]]  # fmt: skip
    lines = [f"{torch.cuda.get_device_name()}; Llama-style, random fp16 weights", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]  # fmt: skip
    print("\n".join(lines), flush=True)
    for size in args.sizes:
        for profile in args.profiles:
            for variant in variants:
                row = "| " + " | ".join(measure(size, variant, profile, modes)) + " |"
                lines.append(row)
                print(row, flush=True)
    if PROFILES_SEEN:
        lines += ["", "Outlier columns (|x| >= 6) of each projection's input, min/median/max over "
                  f"layers, at {' · '.join(map(str, COUNT_TOKENS))} tokens:", "",
                  "| model | profile | " + " | ".join(PROJECTIONS) + " |",
                  "|" + "---|" * (2 + len(PROJECTIONS))]  # fmt: skip
        lines += [profile_row(s, p, counts) for (s, p), counts in PROFILES_SEEN.items()]
        print("\n".join(lines[-(len(PROFILES_SEEN) + 4) :]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
