"""The report's layout as data: which panels, in which order, with which headings (``dashboards/report.yaml``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_LAYOUT = Path(__file__).resolve().parents[2] / "dashboards" / "report.yaml"


class PanelSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="a panel of unetnas.report.figures.PANELS")
    title: str = Field(min_length=1, description="section heading")
    intro: str = Field("", description="a sentence under the heading")

    @field_validator("id")
    @classmethod
    def _known(cls, v: str) -> str:
        from unetnas.report.figures import PANELS

        if v not in PANELS:
            raise ValueError(f"must be one of {', '.join(PANELS)}")
        return v


class Layout(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str = Field("unetnas study {study}", description="page title; {study} is the study name")
    panels: tuple[PanelSpec, ...] = Field(min_length=1, description="top to bottom")

    @field_validator("panels")
    @classmethod
    def _unique(cls, v: tuple[PanelSpec, ...]) -> tuple[PanelSpec, ...]:
        ids = [p.id for p in v]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"panel ids must be unique, repeated: {', '.join(dup)}")
        return v


def load_layout(path: str | Path | None = None) -> Layout:
    """Read and validate a layout YAML (default ``dashboards/report.yaml``); bad files raise a one-line
    ``UserError`` naming the file, field and rule."""
    from unetnas.io import load_model

    path = Path(path) if path is not None else DEFAULT_LAYOUT
    return load_model(path, Layout)
