"""One search configuration (``SearchConfig``), as `unetnas search`, `unetnas study create` and `unetnas worker`
share it: a Pydantic model, stored with the study (``model_dump``) and read back by a joining worker
(``model_validate``), and compared field by field when a study is opened again (``changed``).

Fields that belong to the study (``STUDY_FIELDS``) are stored at creation ("launch" in the study's settings) and
must be the same on every later run of it (resume, a second `study create`, a worker); the budget may be raised
(see ``session._open``); where the study lives (``storage``, ``study``) is not compared, and the space, recipe and
table files are compared by content, not by path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

STUDY_FIELDS = (
    "space",
    "data",
    "recipe",
    "objectives",
    "max_gmacs",
    "max_params",
    "sampler",
    "seed",
    "enqueue_presets",
    "runs_dir",
    "replay",
    "cycle",
    "proxy",
)
# space, recipe and replay are compared by content (``study.open_study``: the resolved space and recipe, the table's
# digest), not by path: the same file copied elsewhere is the same study, another content at the same path is not
# runs_dir: where *new* trial folders go (each trial stores its own folder); a resume from another working directory
# keeps the stored one (``unetnas study create`` says so)
COMPARED = tuple(f for f in STUDY_FIELDS if f not in ("space", "recipe", "replay", "runs_dir"))
FLAGS = {"cycle": "cycle (bench)", "enqueue_presets": "--enqueue-presets", "objectives": "--objectives"}


class SearchConfig(BaseModel):
    """What a search is asked to do (the CLI's options, typed)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    budget: float = Field(..., gt=0, description="total FLOPs of training and evaluation")
    space: Path | None = Field(None, description="space YAML (default space/tiny.yaml, or the replayed table's)")
    data: str = Field("shapes", description="'shapes' (the built-in world) or a prepared data folder")
    recipe: Path | None = Field(None, description="recipe YAML (default trials/short.yaml, or the table's)")
    storage: str | None = Field(None, description="Optuna storage URL")
    study: str = "demo"
    objectives: tuple[str, ...] = ("alignment", "gmacs")
    max_gmacs: float | None = None
    max_params: float | None = None
    sampler: str = "tpe"
    seed: int = 0
    enqueue_presets: bool = False
    runs_dir: Path = Path("runs")
    replay: Path | None = None  # a ground-truth table: answer rungs from it instead of training
    cycle: tuple[int, ...] | None = None  # bracket types to lay out (None: Hyperband's); see plan.make_plan
    proxy: dict[str, Any] | None = None  # recipe.search.proxy overrides (--proxy, --questions, ...; proxies.select)

    def launch(self) -> dict[str, Any]:
        """The study's fields as stored with it (JSON; paths made absolute)."""
        out = self.model_dump(mode="json", include=set(STUDY_FIELDS))
        for key in ("space", "recipe", "runs_dir", "replay"):
            if out[key] is not None:
                out[key] = str(Path(out[key]).resolve())
        return out

    @classmethod
    def of_launch(cls, launch: dict[str, Any], **more: Any) -> SearchConfig:
        """The configuration a study was made with (``launch``) plus ``more`` (budget, storage, study, ...)."""
        fields = {k: v for k, v in launch.items() if k in STUDY_FIELDS and v is not None}
        return cls.model_validate({**fields, **{k: v for k, v in more.items() if v is not None}})

    def changed(self, launch: dict[str, Any]) -> list[str]:
        """The study fields (``COMPARED``) in which this configuration differs from a stored ``launch``, as
        ``name stored -> asked`` phrases; empty when the same."""
        mine = self.launch()
        out = []
        for key in COMPARED:
            if key not in launch:  # stored by an older version: not compared
                continue
            if launch[key] != mine[key]:
                flag = FLAGS.get(key, "--" + key.replace("_", "-"))
                out.append(f"{flag} {_show(launch[key])} -> {_show(mine[key])}")
        return out


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    text = "none" if value is None else str(value)
    return text if len(text) <= 60 else "..." + text[-57:]
