"""The labelled samples sheet (issue 21 item 4): the built-in world's judge answers every shown image's questions
again (for free), and the sheet shows each image at a readable size with its prompt and those answers."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from unetnas.proxies.tifa import WorldTifa
from unetnas.report.samples import SAMPLES_FILE, SAMPLES_JSON, SHEET_IMAGES, TILE_PX, write_samples
from unetnas.world.render import render


def test_sheet_shows_prompts_and_the_judges_answers(tmp_path) -> None:
    proxy = WorldTifa(prompts=10, images_per_prompt=2)
    scenes = proxy.prompt_set.scenes
    # prompt p's images: its own scene's render (the judge reads it right), then a blank image
    images = np.stack([im for s in scenes for im in (render(s, 32), np.full((32, 32, 3), 255, np.uint8))])
    details = {"images": images, "images_per_prompt": 2, "per_prompt_alignment": [0.5] * 10, "steps": 10, "cfg": 4.0}
    png = write_samples(tmp_path, proxy, details)
    assert png == tmp_path / SAMPLES_FILE
    meta = json.loads((tmp_path / SAMPLES_JSON).read_text())
    shown = meta["samples"]
    assert len(shown) == SHEET_IMAGES and [e["prompt"] for e in shown] == proxy.prompt_set.captions[:SHEET_IMAGES]
    questions = proxy.prompt_set.questions_by_prompt()
    for p, e in enumerate(shown):
        assert e["image"] == 2 * p and e["alignment"] == 0.5
        assert [a["question"] for a in e["answers"]] == [q["question"] for q in questions[p]]
    right = np.mean([a["correct"] for e in shown for a in e["answers"]])
    assert right > 0.8, right  # the judge reads clean renders of the prompt's own scene
    sheet = Image.open(png)
    assert sheet.width >= 4 * TILE_PX and sheet.height >= TILE_PX  # 4 tiles at a readable size
    assert write_samples(tmp_path, proxy, {"images": None}) is None
