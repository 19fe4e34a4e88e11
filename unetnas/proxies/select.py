"""The search's alignment proxy: chosen by ``recipe.search.proxy`` (or `unetnas search --proxy ...`), built once
per search and checked before anything is stored or spent.

Names: ``auto`` (the built-in world's TIFA on ``--data shapes``, validation loss only on prepared data), ``tifa``
(the built-in world's TIFA: ``--data shapes`` only), ``val_loss`` (no alignment scoring: every rung ranks by
validation loss), ``vqa_tifa`` and ``clipscore`` (``unetnas.proxies.real``: judged by local models on the trial's
samples, with the same text-blind correction and standard errors over prompts as the built-in TIFA). The real
proxies score ``search.tifa_prompts`` prompts (the file's first) x ``search.tifa_images`` images each.

``build`` fails with one ``UserError`` line when the proxy cannot run: a model path that is missing or not such a
model, a question file that holds no TIFA questions (vqa_tifa), fewer than 2 prompts, a VAE that is not the
data's, or a model given that the proxy does not use. It computes one FLOPs bound on the space's first member, so
every model is loaded (and probed) before the search opens its study.
"""

from __future__ import annotations

from pathlib import Path

from unetnas.errors import UserError
from unetnas.proxies.base import Proxy, Subject
from unetnas.spec import UNetSpec
from unetnas.train.recipe import Recipe

REAL = ("vqa_tifa", "clipscore")
NEEDS = {"vqa_tifa": ("questions", "vqa"), "clipscore": ("questions", "clip")}  # besides vae on latent data
FLAGS = {"questions": "--questions", "vqa": "--vqa", "clip": "--clip", "vae": "--vae"}


def resolved_name(recipe: Recipe, data: str) -> str:
    """The proxy a search of ``data`` with ``recipe`` uses (``auto`` resolved)."""
    name = recipe.search.proxy.name
    if name == "auto":
        return "tifa" if data == "shapes" else "val_loss"
    return name


def text_encoder_of(data: str) -> str | None:
    """The text encoder a prepared data folder was encoded with (None: the packaged MiniLM, or the world)."""
    if data == "shapes":
        return None
    from unetnas.data.shards import read_meta
    from unetnas.text import PACKAGED_NAME

    name = read_meta(Path(data))["text_encoder"]
    return None if name == PACKAGED_NAME else name


def _path(recipe: Recipe, value: str | None) -> Path | None:
    """A recipe path: absolute as given, relative to the recipe file's folder (the CLI passes absolute ones)."""
    if value is None:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() or recipe.source is None else Path(recipe.source).parent / p


def build(recipe: Recipe, data: str, spec: UNetSpec, device: str | None = None) -> Proxy | None:
    """The search's alignment proxy (None: validation loss only), checked on ``spec`` (a member of the space).

    Raises a one-line ``UserError`` naming the flag (or file) and the rule when it cannot run.
    """
    s, ps = recipe.search, recipe.search.proxy
    name = resolved_name(recipe, data)
    given = {k: getattr(ps, k) for k in FLAGS if getattr(ps, k) is not None}
    unused = [k for k in given if k not in NEEDS.get(name, ()) + (("vae",) if name in REAL else ())]
    if unused:
        raise UserError(f"is not used by proxy {name!r}", field=FLAGS[unused[0]], value=given[unused[0]])
    if name == "val_loss":
        return None
    if name == "tifa":
        if data != "shapes":
            raise UserError(
                "the built-in TIFA proxy reads the built-in world; score prepared data with --proxy "
                "vqa-tifa or clipscore (or val-loss)",
                field="--proxy",
                value="tifa",
            )
        from unetnas.proxies.tifa import WorldTifa

        return WorldTifa(prompts=s.tifa_prompts, images_per_prompt=s.tifa_images)
    for key in NEEDS[name]:
        if key not in given:
            what = {
                "questions": "a TIFA v1.0 question file" + (" or a prompt file" if name == "clipscore" else ""),
                "vqa": "a local BLIP / ViLT VQA model directory",
                "clip": "a local CLIPModel directory",
            }[key]
            raise UserError(f"is required by proxy {name!r} ({what})", field=FLAGS[key])
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    questions, vae = _path(recipe, ps.questions), _path(recipe, ps.vae)
    if spec.vae_downsample > 1 and vae is None:
        raise UserError(
            "the space diffuses VAE latents; give the AutoencoderKL the data was prepared with", field="--vae"
        )
    common = dict(vae=vae, images_per_prompt=s.tifa_images, foils=ps.foils, device=device)
    if name == "vqa_tifa":
        from unetnas.proxies.real import VqaTifa

        if questions.suffix.lower() != ".json":
            raise UserError(
                "holds prompts, not TIFA questions; proxy 'vqa_tifa' needs a TIFA v1.0 question file (.json)",
                source=questions,
            )
        proxy: Proxy = VqaTifa(questions, _path(recipe, ps.vqa), prompts=s.tifa_prompts, **common)
    else:
        from unetnas.proxies.real import ClipScore, read_prompts

        proxy = ClipScore(_path(recipe, ps.clip), read_prompts(questions)[: s.tifa_prompts], **common)
    proxy.flops(Subject(spec, None, recipe, text_encoder_of(data)))  # loads and probes every model now
    return proxy


def with_overrides(recipe: Recipe, overrides: dict | None) -> Recipe:
    """``recipe`` with ``search.proxy`` fields replaced by ``overrides`` (the CLI's ``--proxy``, ``--questions``,
    ``--vqa``, ``--clip``, ``--vae``, ``--foils``; None values left as the recipe has them)."""
    from pydantic import ValidationError

    from unetnas.train.recipe import ProxySettings

    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if not overrides:
        return recipe
    try:
        ps = ProxySettings.model_validate({**recipe.search.proxy.model_dump(), **overrides})
    except ValidationError as err:
        e = err.errors()[0]
        key = str(e["loc"][0]) if e["loc"] else "proxy"
        raise UserError(e["msg"], field=FLAGS.get(key, f"--{key}"), value=overrides.get(key)) from None
    return recipe.model_copy(update={"search": recipe.search.model_copy(update={"proxy": ps})})


def plan_args(proxy: Proxy | None, recipe: Recipe, data: str) -> dict:
    """Keyword arguments of ``unetnas.search.plan.make_plan`` for the search's proxy: no alignment rungs for
    validation loss only; a real proxy's FLOPs per score (its bound on each member, prompt encoding included)."""
    if proxy is None:
        return {"score": False}
    if proxy.name in REAL:
        text = text_encoder_of(data)
        return {"proxy_flops": lambda spec: proxy.flops(Subject(spec, None, recipe, text))}
    return {}
