"""CLIPScore of (image, caption) pairs with a transformers ``CLIPModel`` loaded from a local directory.

Convention (torchmetrics' ``CLIPScore``): ``score = max(100 * cos(E_image, E_caption), 0)``, in [0, 100]. The paper
(Hessel et al. 2021) writes ``2.5 * max(cos, 0)``; multiply by 0.025 to get it. Captions longer than the text tower's
positions (77 for real CLIP) are truncated, as torchmetrics does. The clamp is per pair here (torchmetrics clamps
the batch mean); the two differ only when some cosine is negative, which real CLIP pairs almost never are.

FLOPs are measured like the VQA backend's: 2 x weights x rows over every Linear / Conv2d run (attention products
left out), kept in ``last_flops`` (last call) and ``total_flops`` (running sum).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from unetnas.proxies.vqa import count_flops, load_checked, resolve_model, to_pil

_KINDS = {"CLIPModel": "clip"}
PAPER_SCALE = 0.025  # torchmetrics' 100 * cos -> the paper's 2.5 * cos


class ClipScoreBackend:
    """A frozen CLIP model + processor; ``score`` gives one CLIPScore per (image, caption) pair."""

    def __init__(self, model: torch.nn.Module, processor: Any, *, source: str, batch_size: int = 32) -> None:
        self.model, self.processor = model.eval().requires_grad_(False), processor
        self.source, self.batch_size = source, batch_size
        self.device = next(model.parameters()).device
        self.max_text_tokens = int(model.config.text_config.max_position_embeddings)
        self.last_flops = self.total_flops = 0

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", **kwargs: Any) -> ClipScoreBackend:
        """Load a ``CLIPModel`` and its ``CLIPProcessor`` saved with ``save_pretrained`` in a local directory."""
        from transformers import CLIPModel, CLIPProcessor

        mdir, _, _ = resolve_model(path, _KINDS, "the CLIP model")
        model, processor = load_checked(CLIPModel, CLIPProcessor, mdir, device)
        return cls(model, processor, source=str(mdir), **kwargs)

    def _batch(self, images: Sequence[Any], captions: Sequence[str]) -> torch.Tensor:
        inp = self.processor(
            images=[to_pil(i) for i in images],
            text=list(captions),
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.max_text_tokens,
        )
        inp = {k: v.to(self.device) for k, v in inp.items()}
        out = self.model(**inp)  # image_embeds / text_embeds: projected and L2-normalised
        cos = torch.nn.functional.cosine_similarity(out.image_embeds.float(), out.text_embeds.float(), dim=-1)
        return (100.0 * cos).clamp(min=0.0).cpu()

    def score(self, images: Sequence[Any], captions: Sequence[str]) -> list[float]:
        """CLIPScore ``max(100 cos, 0)`` of ``images[i]`` (PIL or uint8 HxWx3) with ``captions[i]``."""
        if isinstance(captions, str):
            raise TypeError("score takes a list of captions, not a single string")
        if len(images) != len(captions):
            raise ValueError(f"{len(images)} images but {len(captions)} captions; pass one caption per image")
        out: list[float] = []
        with count_flops(self.model) as flops, torch.inference_mode():
            for i in range(0, len(captions), self.batch_size):
                out += self._batch(images[i : i + self.batch_size], captions[i : i + self.batch_size]).tolist()
        self.last_flops = flops[0]
        self.total_flops += self.last_flops
        return out
