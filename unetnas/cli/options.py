"""The study options `unetnas search` and `unetnas study create` share, typed once (``Annotated`` typer options),
and the one function that turns them into a ``SearchConfig``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from unetnas.errors import UserError

Budget = Annotated[str, typer.Option("--budget", help="total FLOPs of training and evaluation, e.g. 2e20")]
Space = Annotated[
    Path | None, typer.Option("--space", help="space YAML (default space/tiny.yaml, or the replayed table's)")
]
Data = Annotated[str, typer.Option("--data", help="'shapes' (the built-in world) or a prepared data folder")]
Recipe = Annotated[
    Path | None, typer.Option("--recipe", help="recipe YAML (default trials/short.yaml, or the table's)")
]
Objectives = Annotated[str, typer.Option("--objectives", help="alignment plus gmacs and/or params")]
MaxGmacs = Annotated[float | None, typer.Option("--max-gmacs", help="constraint: inference GMACs at most")]
MaxParams = Annotated[float | None, typer.Option("--max-params", help="constraint: parameters at most")]
Sampler = Annotated[str, typer.Option("--sampler", help="tpe | nsga2 | gp | random")]
Seed = Annotated[int, typer.Option("--seed", min=0, max=2**32 - 1, help="sampler and training seed")]
EnqueuePresets = Annotated[bool, typer.Option("--enqueue-presets", help="add presets that fit the space")]
Replay = Annotated[
    Path | None,
    typer.Option(
        "--replay",
        help="ground-truth table (python -m bench ground-truth): answer "
        "rungs from it instead of training, in milliseconds",
    ),
]
Proxy = Annotated[
    str | None,
    typer.Option(
        "--proxy",
        help="alignment proxy: auto (default: tifa on shapes, val-loss on "
        "prepared data) | tifa | vqa-tifa | clipscore | val-loss",
    ),
]
Questions = Annotated[
    Path | None,
    typer.Option(
        "--questions", help="vqa-tifa: TIFA v1.0 question file; clipscore: that or a prompt file (one a line)"
    ),
]
Vqa = Annotated[Path | None, typer.Option("--vqa", help="vqa-tifa: local BLIP / ViLT VQA model directory")]
Clip = Annotated[Path | None, typer.Option("--clip", help="clipscore: local CLIPModel directory")]
Vae = Annotated[
    Path | None, typer.Option("--vae", help="real proxies on latent data: the AutoencoderKL of data prepare")
]
Foils = Annotated[
    int | None,
    typer.Option("--foils", min=1, help="real proxies: foil prompts per prompt (text-blind correction; default 4)"),
]
Json = Annotated[bool, typer.Option("--json", help="print one JSON summary at the end")]

PROXY_NAMES = ("auto", "tifa", "vqa-tifa", "clipscore", "val-loss")


def proxy_overrides(name, questions, vqa, clip, vae, foils) -> dict | None:  # noqa: ANN001 (the options above)
    """recipe.search.proxy overrides from the flags (paths made absolute: they are stored with the study)."""
    if name is not None and name.replace("_", "-") not in PROXY_NAMES:
        raise UserError(f"must be one of {', '.join(PROXY_NAMES)}", field="--proxy", value=name)
    paths = {"questions": questions, "vqa": vqa, "clip": clip, "vae": vae}
    out: dict[str, Any] = {k: str(Path(v).expanduser().resolve()) for k, v in paths.items() if v is not None}
    if name is not None:
        out["name"] = name.replace("-", "_")
    if foils is not None:
        out["foils"] = foils
    return out or None


PROXY_FLAGS = ("proxy", "questions", "vqa", "clip", "vae", "foils")


def search_config(**given: Any):
    """A ``SearchConfig`` from a command's options (``locals()`` of `search` or `study create`; options that are
    not search settings, such as ``--dry-run``, are left out): budget parsed, objectives split, sampler checked
    before anything is opened, proxy flags gathered into ``proxy``."""
    from unetnas.search.budget import parse_budget
    from unetnas.search.config import SearchConfig
    from unetnas.search.study import make_sampler, parse_objectives

    make_sampler(given["sampler"], given["seed"])  # validate before anything is opened
    fields = {
        k: v
        for k, v in given.items()
        if k in SearchConfig.model_fields and k not in ("budget", "objectives", "proxy") and v is not None
    }
    return SearchConfig(
        budget=parse_budget(given["budget"]),
        objectives=parse_objectives(given["objectives"]),
        proxy=proxy_overrides(*(given[k] for k in PROXY_FLAGS)),
        **fields,
    )
