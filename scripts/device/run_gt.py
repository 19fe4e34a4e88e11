"""``python -m bench ground-truth`` on the device machine, refusing any caption token the packed encoder zeroed.

``pack.py`` keeps the word-embedding rows of the tokens the table's captions use (``.gpu/vocab_ids.json``); this
guard runs in the parent and in every spawned worker (module level: spawn re-imports this file) and turns a token
outside that set into an error instead of a silently different text state.

    python3 scripts/device/run_gt.py [ground-truth args]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
KEPT = frozenset(json.loads((ROOT / ".gpu" / "vocab_ids.json").read_text()))


def _guard() -> None:
    from unetnas.text import TextEncoder

    forward = TextEncoder._forward

    def checked(self, captions):
        ids = {i for t in captions for i in self.tokenizer(t)["input_ids"]}
        if not ids <= KEPT:
            raise RuntimeError(f"token ids {sorted(ids - KEPT)[:5]} were zeroed by pack.py; repack with these captions")
        return forward(self, captions)

    TextEncoder._forward = checked


_guard()

if __name__ == "__main__":
    from bench.ground_truth import main

    raise SystemExit(main(sys.argv[1:]))
