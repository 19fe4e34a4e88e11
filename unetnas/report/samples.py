"""A trial's samples as a person reads them: each image large, under it its prompt and the judge's answers.

``write_samples`` is what the search executor calls after scoring a rung (one call): it writes into the trial
folder ``samples.png``, a contact sheet of the first ``SHEET_IMAGES`` prompts' first image (upscaled to ``TILE_PX``,
nearest neighbour, so the built-in world's 32 px renders stay sharp), each captioned with its prompt, the text-blind-
corrected alignment of that prompt and, where the proxy's judge can be asked again for free (the built-in world's
pixel-reading ``Answerer``), every question with the judge's answer and a check mark; and ``samples.json``, the same
as data (prompt, answers, per-prompt scores), which the dashboard shows next to the image. A judge that costs FLOPs
(BLIP VQA, CLIP) is not asked again: its sheet shows prompts and per-prompt scores only.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

SAMPLES_FILE = "samples.png"
SAMPLES_JSON = "samples.json"
SHEET_IMAGES = 4  # prompts shown (one image each): one row of 4 tiles, about one screen with the answers
TILE_PX = 224  # image side on the sheet
COLS = 4
FONT_PX = 13
TEXT_COLS = 34  # characters per caption line at FONT_PX in a TILE_PX-wide tile


def sample_entries(proxy: Any, details: dict[str, Any], limit: int = SHEET_IMAGES) -> list[dict[str, Any]]:
    """One entry per shown prompt: ``{"prompt", "image" (index into details["images"]), "alignment", "tifa",
    "answers": [{"question", "answer", "expected", "correct"}]}`` (answers empty where the judge is not free)."""
    images = details["images"]
    k = int(details.get("images_per_prompt", 1))
    prompts = list(getattr(getattr(proxy, "prompt_set", None), "captions", []) or [])
    questions = proxy.prompt_set.questions_by_prompt() if prompts else []
    free_judge = getattr(proxy, "answerer", None) if type(proxy).__name__ == "WorldTifa" else None
    n = min(limit, len(images) // k if k else 0, len(prompts) or limit)
    out = []
    for p in range(n):
        entry: dict[str, Any] = {"prompt": prompts[p] if prompts else f"prompt {p}", "image": p * k, "answers": []}
        for key, field in (("per_prompt_alignment", "alignment"), ("per_prompt_tifa", "tifa")):
            values = details.get(key)
            if values is not None and p < len(values):
                entry[field] = float(values[p])
        if free_judge is not None and p < len(questions):
            said = free_judge.answer_lists(images[p * k], [questions[p]])[0]
            entry["answers"] = [
                {"question": q["question"], "answer": a, "expected": q["answer"], "correct": a == q["answer"]}
                for q, a in zip(questions[p], said, strict=True)
            ]
        out.append(entry)
    return out


def _font(px: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def _caption(entry: dict[str, Any]) -> list[tuple[str, tuple[int, int, int]]]:
    lines = [(s, (0, 0, 0)) for s in textwrap.wrap(f'"{entry["prompt"]}"', TEXT_COLS)]
    if "alignment" in entry:
        score = f"alignment {entry['alignment']:+.2f}" + (f", TIFA {entry['tifa']:.2f}" if "tifa" in entry else "")
        lines.append((score, (60, 60, 60)))
    for a in entry["answers"]:
        mark, colour = ("ok", (0, 110, 0)) if a["correct"] else ("X ", (170, 0, 0))
        text = f"{mark} {a['question']} {a['answer']}" + ("" if a["correct"] else f" (want {a['expected']})")
        lines += [(s, colour) for s in textwrap.wrap(text, TEXT_COLS, subsequent_indent="   ")]
    return lines


def render_sheet(images: np.ndarray, entries: list[dict[str, Any]], path: Path) -> Path:
    """Draw the contact sheet of ``entries`` (uint8 ``images``, shape (n, h, w, 3)) to ``path`` (PNG)."""
    from PIL import Image, ImageDraw

    font, pad, line = _font(FONT_PX), 8, FONT_PX + 3
    captions = [_caption(e) for e in entries]
    text_h = max((len(c) for c in captions), default=0) * line
    tile_w, tile_h = TILE_PX + 2 * pad, TILE_PX + text_h + 3 * pad
    cols = min(COLS, len(entries))
    rows = -(-len(entries) // cols)
    sheet = Image.new("RGB", (cols * tile_w, rows * tile_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (e, caption) in enumerate(zip(entries, captions)):
        x, y = (i % cols) * tile_w + pad, (i // cols) * tile_h + pad
        im = Image.fromarray(images[e["image"]]).resize((TILE_PX, TILE_PX), Image.NEAREST)
        sheet.paste(im, (x, y))
        for j, (text, colour) in enumerate(caption):
            draw.text((x, y + TILE_PX + pad + j * line), text, fill=colour, font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def write_samples(folder: Path | None, proxy: Any, details: dict[str, Any]) -> Path | None:
    """Write ``samples.png`` and ``samples.json`` for a scored rung into ``folder``; None when there are no images.

    ``details``: the proxy result's details (``images``: uint8, shape (prompts x images_per_prompt, h, w, 3),
    prompt-major; ``images_per_prompt``; ``per_prompt_alignment`` / ``per_prompt_tifa`` where measured)."""
    if folder is None or details.get("images") is None:
        return None
    entries = sample_entries(proxy, details)
    if not entries:
        return None
    meta = {"steps": details.get("steps"), "cfg": details.get("cfg"), "samples": entries}
    (Path(folder) / SAMPLES_JSON).write_text(json.dumps(meta, indent=1))
    return render_sheet(np.asarray(details["images"]), entries, Path(folder) / SAMPLES_FILE)
