"""Integrations with the Hugging Face stack, each imported on demand:

- `llmint8.integrations.transformers`: `Int8Config` for ``from_pretrained(...,
  quantization_config=Int8Config())``, int8 ``save_pretrained``, bitsandbytes 8-bit checkpoints.
- `llmint8.integrations.peft`: LoRA adapters over frozen `Linear8bitLt` layers.
"""
