"""Ground truth for the cost model: count a real diffusers UNet built on the meta device.

Slow (builds the model); the analytic ``unetnas.cost`` is checked against this in tests and in bench/.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from unetnas.build import build_unet, example_inputs
from unetnas.spec import UNetSpec


def measure(spec: UNetSpec) -> dict[str, int]:
    """Exact params and forward FLOPs (FlopCounterMode, batch 1) of the built model."""
    model = build_unet(spec, device="meta")
    params = sum(p.numel() for p in model.parameters())
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(**example_inputs(spec, batch=1, device="meta"))
    return {"params": params, "flops": counter.get_total_flops()}
