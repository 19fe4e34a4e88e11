"""The proxy interface: one class, one scoring method, and the FLOPs it spends.

A proxy scores a `Subject` (a candidate UNet with what it needs to sample) and reports the evaluation FLOPs it
spent, so the search can charge them to the budget. ``flops(subject)`` is an upper bound known before scoring: the
search reserves it, then settles what ``score`` actually spent.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch

from unetnas.spec import UNetSpec
from unetnas.train.recipe import Recipe


@dataclass
class Subject:
    """What a proxy may look at: the candidate's spec, UNet and recipe, and (during training) its trainer."""

    spec: UNetSpec
    unet: torch.nn.Module
    recipe: Recipe
    text_encoder_path: str | None = None  # None: the packaged MiniLM
    trainer: Any = None  # a live `Trainer` (validation loss needs its data source)

    @classmethod
    def from_trainer(cls, trainer: Any) -> Subject:
        te = trainer.source.describe().get("text_encoder", {}).get("name")
        from unetnas.text import PACKAGED_NAME

        return cls(
            trainer.spec, trainer.engine.module, trainer.recipe, None if te in (None, PACKAGED_NAME) else te, trainer
        )

    @classmethod
    def from_checkpoint(cls, path: str) -> Subject:
        from unetnas.train.trial import LoadedTrial

        t = LoadedTrial(path)
        return cls(t.spec, t.unet, t.recipe, t.text_encoder_path())


@dataclass
class ProxyResult:
    name: str
    value: float
    flops: float  # evaluation FLOPs actually spent
    details: dict[str, Any] = field(default_factory=dict)


class Proxy(abc.ABC):
    """Base class: subclasses set ``name`` and ``direction`` and implement ``score`` and ``flops``."""

    name: ClassVar[str]
    direction: ClassVar[Literal["maximize", "minimize"]]

    @abc.abstractmethod
    def flops(self, subject: Subject) -> float:
        """Upper bound of the FLOPs ``score`` will spend on ``subject``."""

    @abc.abstractmethod
    def score(self, subject: Subject) -> ProxyResult:
        """Score ``subject``; ``ProxyResult.flops`` is what was actually spent (<= ``flops(subject)``)."""


class ValLoss(Proxy):
    """Validation loss on the fixed held-out batch at fixed timesteps with fixed noise (the cheapest proxy)."""

    name, direction = "val_loss", "minimize"

    def flops(self, subject: Subject) -> float:
        from unetnas.cost import cost

        r = subject.recipe
        return float(cost(subject.spec).flops * r.val_samples * len(r.val_timesteps))

    def score(self, subject: Subject) -> ProxyResult:
        if subject.trainer is None:
            raise ValueError("val_loss scores a live trainer (it needs the trial's data source)")
        loss, spent = subject.trainer.val_loss()
        return ProxyResult(self.name, loss, spent)
