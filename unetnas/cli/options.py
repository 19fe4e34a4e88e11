"""The options commands share, typed once (``Annotated`` typer options): the study options of `unetnas search` and
`unetnas study create` (``study_options`` gives a command all of them and turns them into a ``SearchConfig``), and
``--study`` / ``--storage`` / ``--json`` as the commands reading a study spell them."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
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
JsonObject = Annotated[bool, typer.Option("--json", help="print one JSON object")]
StudyName = Annotated[str, typer.Option("--study", help="study name")]
Storage = Annotated[str | None, typer.Option("--storage", help="storage URL (default sqlite:///runs/<study>/study.db)")]

STUDY_OPTIONS: tuple[tuple[str, Any, Any], ...] = (  # (parameter, typed option, default), in --help's order
    ("budget", Budget, inspect.Parameter.empty),
    ("space", Space, None),
    ("data", Data, "shapes"),
    ("recipe", Recipe, None),
    ("objectives", Objectives, "alignment,gmacs"),
    ("max_gmacs", MaxGmacs, None),
    ("max_params", MaxParams, None),
    ("sampler", Sampler, "tpe"),
    ("seed", Seed, 0),
    ("enqueue_presets", EnqueuePresets, False),
    ("replay", Replay, None),
    ("proxy", Proxy, None),
    ("questions", Questions, None),
    ("vqa", Vqa, None),
    ("clip", Clip, None),
    ("vae", Vae, None),
    ("foils", Foils, None),
)

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


def study_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for a command that takes ``cfg`` (a ``SearchConfig``): typer sees the ``STUDY_OPTIONS`` in
    ``cfg``'s place (its signature is the command's own options with them spliced in); a call gets
    ``cfg = search_config(...)`` of them and of its own options that are search settings (``--storage``,
    ``--study``, ``--runs-dir``), its own options as given. Bad values are refused before the command runs."""
    kw = inspect.Parameter.KEYWORD_ONLY
    sig = inspect.signature(command, eval_str=True)
    names = list(sig.parameters)
    shared = [inspect.Parameter(n, kw, default=d, annotation=a) for n, a, d in STUDY_OPTIONS]
    own = [p.replace(kind=kw) for p in sig.parameters.values() if p.name != "cfg"]
    params = [*own[: names.index("cfg")], *shared, *own[names.index("cfg") :]]

    @functools.wraps(command)
    def with_config(**given: Any) -> Any:
        options = {p.name: given.pop(p.name) for p in shared}
        return command(cfg=search_config(**options, **given), **given)

    with_config.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    with_config.__annotations__ = {p.name: p.annotation for p in params}  # resolved types, as typer reads them
    return with_config
