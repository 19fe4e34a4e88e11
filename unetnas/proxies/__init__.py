"""Alignment proxies: one class each, one scoring method, registered in an explicit table.

``val_loss`` (cheapest, every rung); ``tifa`` (the built-in world's TIFA-style question answering from pixels);
for real data, ``vqa_tifa`` (TIFA v1.0 questions answered by a local BLIP / ViLT on the trial's decoded samples)
and ``clipscore`` (CLIPScore of the samples with a local CLIP). Each reports the FLOPs it spent, and ``flops``
bounds them before scoring.
"""

from unetnas.proxies.base import Proxy, ProxyResult, Subject, ValLoss
from unetnas.proxies.real import ClipScore, VqaTifa
from unetnas.proxies.tifa import WorldTifa

PROXIES: dict[str, type[Proxy]] = {
    "val_loss": ValLoss,
    "tifa": WorldTifa,
    "vqa_tifa": VqaTifa,
    "clipscore": ClipScore,
}

__all__ = ["PROXIES", "ClipScore", "Proxy", "ProxyResult", "Subject", "ValLoss", "VqaTifa", "WorldTifa"]
