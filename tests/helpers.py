"""Helpers several test files share: the mini UNet spec, a command line from options, a TIFA question, and the
environment of a CLI child process. Import them (``from tests.helpers import ...``); they hold no state."""

from __future__ import annotations

import os
from typing import Any

from unetnas.presets import PRESETS

# The smallest UNet the trainer tests use: two levels of 8/16 channels at 16 px, cross-attention on the second
# level and in the middle (the world's 16-token text); builds and trains in a second on a CPU.
MINI_SPEC = PRESETS["tiny"].with_(
    name="mini",
    base_channels=8,
    channel_mult=(1, 2),
    layers_per_block=(1, 1),
    attention=("none", "cross"),
    transformer_depth=(0, 1),
    mid_attention="cross",
    mid_depth=1,
    latent_size=16,
    head_dim=8,
    norm_num_groups=4,
    text_len=16,
)

# torch.distributed settings that in-process training (an earlier test) leaves in os.environ
DISTRIBUTED = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "CROSS_RANK",
    "CROSS_SIZE",
)


def cli_args(*words: str, **options: Any) -> list[str]:
    """A ``unetnas`` argv: ``words`` (the command, e.g. "study", "create"), then one ``--name value`` per option in
    the order given (``max_gmacs`` -> ``--max-gmacs``; a path or number as ``str`` spells it; True: the bare flag;
    None or False: left out)."""
    out = list(words)
    for name, value in options.items():
        if value is None or value is False:
            continue
        out.append("--" + name.replace("_", "-"))
        if value is not True:
            out.append(str(value))
    return out


def tifa_question(pid: Any, caption: str, question: str, choices: list[str], answer: str, etype: str) -> dict:
    """One question of a TIFA v1.0 question file (the answer is also the element asked about)."""
    return {
        "id": pid,
        "caption": caption,
        "question": question,
        "choices": choices,
        "answer": answer,
        "element_type": etype,
        "element": answer,
    }


def clean_env(**more: str) -> dict[str, str]:
    """This process's environment for a fresh CLI process: one thread, no ``DISTRIBUTED`` settings, plus ``more``."""
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED}
    env["OMP_NUM_THREADS"] = "1"
    env.update(more)
    return env
