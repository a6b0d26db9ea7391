"""A few optimizer steps of causal-LM training on one batch, for the LoRA tests."""

import torch

# The projections the LoRA tests put adapters on.
LORA_TARGETS = ["q_proj", "v_proj", "up_proj", "down_proj"]


def train(model, input_ids, steps=15, lr=1e-2, after_backward=None):
    """Trains the parameters that require grad; returns the losses. `after_backward(step)` runs
    between backward and the optimizer step (to inspect gradients)."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for step in range(steps):
        loss = model(input_ids=input_ids, labels=input_ids).loss
        optimizer.zero_grad()
        loss.backward()
        if after_backward is not None:
            after_backward(step)
        optimizer.step()
        losses.append(loss.item())
    return losses
