"""The built-in world: procedurally rendered scenes, captions, TIFA-style questions and a pixel-reading answerer.

``sample_scene`` -> ``render`` / ``describe`` -> ``make_questions`` -> ``Answerer`` -> ``tifa_score``;
``WorldDataset`` / ``fixed_set`` / ``prompt_set`` package them for training and evaluation, and ``selftest``
checks that the answerer scores the renderer near 1 and noise near chance.
"""

from unetnas.world.answerer import Answerer, Detection, to_pixels
from unetnas.world.captions import RELATIONS, Caption, Mention, Relation, describe, parse_caption
from unetnas.world.dataset import PromptSet, WorldBatch, WorldDataset, fixed_set, prompt_set, sample_batch, to_tensor
from unetnas.world.questions import (
    CATEGORIES,
    chance,
    load_tifa_questions,
    make_questions,
    save_tifa_questions,
    validate_tifa_questions,
)
from unetnas.world.render import MAX_RESOLUTION, MIN_RESOLUTION, gaussian_blur, render, render_batch
from unetnas.world.scene import (
    ALL_COMBOS,
    COLOR_NAMES,
    COLORS,
    HELD_OUT,
    SHAPES,
    SIZES,
    SPLITS,
    TRAIN_COMBOS,
    Scene,
    WorldObject,
    sample_scene,
)
from unetnas.world.selftest import selftest, tifa_score

__all__ = [
    "ALL_COMBOS",
    "CATEGORIES",
    "COLORS",
    "COLOR_NAMES",
    "HELD_OUT",
    "MAX_RESOLUTION",
    "MIN_RESOLUTION",
    "RELATIONS",
    "SHAPES",
    "SIZES",
    "SPLITS",
    "TRAIN_COMBOS",
    "Answerer",
    "Caption",
    "Detection",
    "Mention",
    "PromptSet",
    "Relation",
    "Scene",
    "WorldBatch",
    "WorldDataset",
    "WorldObject",
    "chance",
    "describe",
    "fixed_set",
    "gaussian_blur",
    "load_tifa_questions",
    "make_questions",
    "parse_caption",
    "prompt_set",
    "render",
    "render_batch",
    "sample_batch",
    "sample_scene",
    "save_tifa_questions",
    "selftest",
    "tifa_score",
    "to_pixels",
    "to_tensor",
    "validate_tifa_questions",
]
