"""Alignment proxies: one class each, one scoring method, registered in an explicit table.

``val_loss`` (cheapest, every rung), ``tifa`` (the built-in world's TIFA-style question answering from pixels);
real-data backends (``vqa.VQABackend``, ``clipscore.ClipScoreBackend``) score generated images for real data.
"""

from unetnas.proxies.base import Proxy, ProxyResult, Subject, ValLoss
from unetnas.proxies.tifa import WorldTifa

PROXIES: dict[str, type[Proxy]] = {
    "val_loss": ValLoss,
    "tifa": WorldTifa,
}

__all__ = ["PROXIES", "Proxy", "ProxyResult", "Subject", "ValLoss", "WorldTifa"]
