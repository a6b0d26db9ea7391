"""Device maps that put layers on the CPU: those layers run on llmint8's CPU backend.

accelerate's `dispatch_model` treats the modules a device map puts on ``"cpu"`` as *offloaded*:
their weights wait in CPU memory and are copied to the first GPU for every forward, where the
module runs. llmint8 layers have a CPU backend, so `run_cpu_modules_on_cpu` lets those modules run
where the map puts them: their weights (int8 rows and row scales) are placed in CPU memory once,
and a hook moves each input to the CPU and the output back to the device the input came from.
"""

from __future__ import annotations

from torch import nn

from .._optional import require
from ..errors import FormatError


def run_cpu_modules_on_cpu(model: nn.Module) -> list[str]:
    """Turns accelerate's CPU offload of the modules ``model.hf_device_map`` places on ``"cpu"``
    into execution on the CPU. Returns the names of the modules changed (none when nothing is
    offloaded to the CPU).

    `dispatch_model` gives each offloaded block a plain hook and puts an offload hook (weights on
    the meta device, their values in a weights map) on every module below it that holds tensors
    of its own; all of them are replaced by one hook on the block that runs it on the CPU."""
    hooks = require("accelerate.hooks", "a device map with 'cpu' entries")
    AlignDevicesHook, add_hook_to_module = hooks.AlignDevicesHook, hooks.add_hook_to_module
    remove_hook_from_module = hooks.remove_hook_from_module

    changed = []
    for name, device in (getattr(model, "hf_device_map", None) or {}).items():
        module = model.get_submodule(name)
        if str(device) != "cpu":
            continue
        maps = {sub: _offload_map(sub) for _, sub in module.named_modules()}
        maps = {sub: found for sub, found in maps.items() if found is not None}
        if not maps:
            continue
        # Detaching puts the weights back on their devices without the int8 layers' row scales;
        # loading the stored state gives every tensor, scales included, its CPU value.
        remove_hook_from_module(module, recurse=True)
        for sub, state in maps.items():
            sub.load_state_dict(state, strict=False, assign=True)
        unset = [n for n, t in (*module.named_parameters(), *module.named_buffers()) if t.is_meta]
        if unset:
            raise FormatError(f"{name}: no CPU values for {unset[:4]} in accelerate's offload map")
        module.to("cpu")  # buffers the hooks had placed on the GPU
        add_hook_to_module(module, AlignDevicesHook(execution_device="cpu", io_same_device=True))
        changed.append(name)
    return changed


def _offload_map(module: nn.Module):
    """The tensors (CPU values, by name within `module`) an offload hook on `module` keeps, or
    None when no offload hook is attached there."""
    hook = getattr(module, "_hf_hook", None)
    hooks = getattr(hook, "hooks", None) or ([hook] if hook is not None else [])
    for candidate in hooks:
        if getattr(candidate, "offload", False) and candidate.weights_map is not None:
            weights = candidate.weights_map
            prefix = getattr(weights, "prefix", "")
            stored = getattr(weights, "dataset", weights)
            return {key[len(prefix) :]: stored[key] for key in stored if key.startswith(prefix)}
    return None
