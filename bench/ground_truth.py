"""The tabular ground truth of a design space (in the spirit of NAS-Bench-201 and JAHS-Bench-201).

Every member of the space that can read the prompt, plus a text-blind control, is trained on the built-in world
to the full horizon with one recipe; at geometric checkpoints (horizon / ratio^k) each run records validation
loss, raw TIFA and the text-blind-corrected alignment (with standard errors over prompts), training FLOPs, samples
and wall seconds. The horizon is in the recipe's unit (``horizon_unit``): training *samples* (Li et al.: every
design trained for the same steps x batch; the v2 default) or training *FLOPs* (the isoFLOP view; v1).

Seeds: ``--seeds`` for every design, one more for ``--extra-seeds`` designs spread over the GMACs range. Runs are
ordered so that a partial table is useful: seed 0 of designs in an order that spreads any prefix over the GMACs
range, then seed 1 in the same order, then the extra seeds. ``--pilot N`` keeps N reading designs spread over
GMACs (plus the control) and runs breadth-first: every run to checkpoint k before any run goes to k + 1.

Resumable: each run keeps its trainer checkpoint and finished rows under ``--work`` in a folder keyed by (spec,
recipe, seed), so a pilot's runs are reused by the full table where their checkpoints coincide; the table is
rewritten atomically after every run (every checkpoint in a pilot).

    python -m bench ground-truth [--space space/tiny.yaml] [--unit samples] [--horizon 16384] [--checkpoints 6]
                                 [--ratio 2] [--seeds 2] [--extra-seeds 12] [--prompts 128] [--pilot N]
                                 [--out bench/data/gt-<space>-v2.json] [--work runs/ground-truth-v2]
                                 [--processes K] [--precision fp32] [--deadline-s S]
    v1: python -m bench ground-truth --unit flops --horizon 2.4e12 --checkpoints 3 --ratio 4 --seeds 1
                                 --extra-seeds 8 --out bench/data/gt-tiny-v1.json --work runs/ground-truth

Parallel runs: ``--processes K`` trains K runs at once, one process each (spawned; each builds its own
process group, world and proxy), taking runs in plan order; on a GPU the K processes share the device (small
UNets are launch-bound, so K processes keep it busier than one). ``--precision fp32`` trains in fp32 on a GPU too
(TF32 off for matmuls and cuDNN convolutions), so a GPU table measures what the CPU one does. ``--deadline-s S``
starts no run after S seconds (with K > 1 it also stops the runs in flight at S; finished checkpoints are kept in ``--work`` and
appear in ``partial_runs``): a table that must land inside a time limit lands with what it has. A row's
``eval_flops`` is informational (the replay prices evaluation itself); the first scored row of each process
includes the one-off encoding of the prompts.

Table schema (version 2, a strict superset of version 1): ``{"version", "meta", "designs": [{id, spec, params,
gmacs, train_flops_per_sample, text_blind, tags}], "runs": [{design, seed, checkpoints: [{train_flops, steps,
samples, wall_s, eval_flops, eval_s, val_loss, tifa, tifa_se, alignment, alignment_se, blind_tifa,
per_prompt_alignment}]}], "partial_runs": [same, fewer checkpoints]}``; v2 adds ``meta.horizon_unit``
(``meta.horizons`` are in it), ``meta.seeds``, ``meta.extra_seed_designs``, ``meta.runs_planned``, ``meta.pilot``,
``meta.devices`` (rows per device; each row's ``device``), ``meta.align_from`` (checkpoints before this index have validation loss only: their alignment fields are null)
and ``partial_runs``. Units: FLOPs, samples, seconds; alignment and TIFA are accuracies in [0, 1] (alignment is a
difference and may be negative).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.cli import Parser

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_HORIZON = {"flops": 2.4e12, "samples": 16384}
DEFAULT_RECIPE = {"flops": ROOT / "trials" / "short.yaml", "samples": ROOT / "trials" / "samples.yaml"}


def designs(space_path: Path) -> list[dict[str, Any]]:
    """Every text-reading member of the space, then the strongest text-blind control (largest C, self-attention).

    Ids are stable for a given space file: members in the space's enumeration order, ``d00``, ``d01``, ...
    """
    from unetnas.cost import cost
    from unetnas.io import load_model
    from unetnas.space import SearchSpace

    space = load_model(space_path, SearchSpace)
    blind_space = (
        space.model_copy(update={"allow_text_blind": True}) if "allow_text_blind" in type(space).model_fields else space
    )
    members = list(blind_space.enumerate())
    reading = [m for m in members if text_reading(m)]
    blind = [m for m in members if not text_reading(m)]
    control = max(blind, key=lambda m: (m.base_channels, "self" in m.attention, m.mid_depth), default=None)
    chosen = reading + ([control] if control is not None else [])
    out = []
    for i, spec in enumerate(chosen):
        c = cost(spec)
        out.append(
            {
                "id": f"d{i:02d}",
                "spec": spec.with_(name=f"d{i:02d}").model_dump(mode="json"),
                "params": c.params,
                "gmacs": c.gmacs,
                "train_flops_per_sample": c.train_flops_per_sample,
                "text_blind": not text_reading(spec),
                "tags": tags(spec),
            }
        )
    return out


def text_reading(spec) -> bool:
    """True if the UNet has cross-attention somewhere (a level or the mid block): it can read the prompt."""
    return "cross" in spec.attention or (spec.mid_attention == "cross" and spec.mid_depth > 0)


def tags(spec) -> list[str]:
    """Human-readable design facts the science contrasts group by."""
    t = [f"C{spec.base_channels}", f"mult{'-'.join(map(str, spec.channel_mult))}"]
    t += [f"L{i}:{a}-{d}" for i, (a, d) in enumerate(zip(spec.attention, spec.transformer_depth))]
    t.append(f"mid:{spec.mid_attention}-{spec.mid_depth}")
    return t


def second_seed_ids(table_designs: list[dict[str, Any]], n: int) -> list[str]:
    """``n`` designs spread evenly over the GMACs range (the text-blind control always among them)."""
    reading = sorted((d for d in table_designs if not d["text_blind"]), key=lambda d: d["gmacs"])
    blind = [d["id"] for d in table_designs if d["text_blind"]]
    k = max(n - len(blind), 1)
    picks = [reading[round(i * (len(reading) - 1) / max(k - 1, 1))]["id"] for i in range(k)]
    return list(dict.fromkeys(picks + blind))[:n]


def spread_order(table_designs: list[dict[str, Any]]) -> list[str]:
    """Every design id, ordered so that each prefix spreads over the GMACs range (bisection of the sorted list).

    The cheapest and the dearest reading designs come first, then the text-blind control, then the midpoints of
    the widest remaining gaps (a van der Corput order over GMACs ranks).
    """
    reading = [d["id"] for d in sorted((d for d in table_designs if not d["text_blind"]), key=lambda d: d["gmacs"])]
    blind = [d["id"] for d in table_designs if d["text_blind"]]
    if not reading:
        return blind
    order = [0, len(reading) - 1]
    gaps = [(0, len(reading) - 1)]
    while gaps:
        nxt = []
        for lo, hi in gaps:
            if hi - lo > 1:
                m = (lo + hi) // 2
                order.append(m)
                nxt += [(lo, m), (m, hi)]
        gaps = nxt
    ids = [reading[i] for i in dict.fromkeys(order)]
    return ids[:2] + blind + ids[2:]


def plan_jobs(table_designs: list[dict[str, Any]], seeds: int, extra: list[str]) -> list[tuple[str, int]]:
    """(design id, seed) in run order: seed 0 of every design in spread order, then seed 1, ..., then extra seeds."""
    order = spread_order(table_designs)
    jobs = [(i, s) for s in range(seeds) for i in order]
    return jobs + [(i, seeds) for i in order if i in set(extra)]


def checkpoint_horizons(horizon: float, n: int, ratio: float, unit: str, batch: int) -> list[float]:
    """``horizon / ratio^k`` for k = n-1 .. 0, ascending; in samples rounded down to whole batches (>= one)."""
    hs = [horizon / ratio**k for k in reversed(range(n))]
    if unit == "samples":
        hs = [float(max(batch, int(h // batch) * batch)) for h in hs]
    return list(dict.fromkeys(hs))


ALIGNMENT_FIELDS = (
    "tifa",
    "tifa_se",
    "alignment",
    "alignment_se",
    "blind_tifa",
    "alignment_by_category",
    "per_prompt_alignment",
)


def run_key(spec: dict[str, Any], recipe, seed: int) -> str:
    """A run's folder name: the design's spec (without its name), the recipe and the seed, hashed."""
    blob = json.dumps(
        [{k: v for k, v in spec.items() if k != "name"}, recipe.model_dump(mode="json"), seed], sort_keys=True
    )
    return f"{spec.get('name') or 'spec'}-s{seed}-{hashlib.sha1(blob.encode()).hexdigest()[:10]}"


def run_one(
    design: dict[str, Any],
    seed: int,
    *,
    recipe,
    source,
    proxy,
    horizons: list[float],
    work: Path,
    log,
    align_from: int = 0,
) -> list[dict[str, Any]]:
    """Train one design with one seed through every checkpoint; resumes from ``work`` if a run was cut short.

    Rows already measured at a checkpoint's step are reused (also from a run with another checkpoint grid), and
    training continues from the saved trainer state when it lies at or before the next missing checkpoint.
    Checkpoints before index ``align_from`` get validation loss only (alignment fields None).
    """
    from unetnas.proxies import Subject, ValLoss
    from unetnas.spec import UNetSpec
    from unetnas.train import checkpoint
    from unetnas.train.trainer import Trainer

    run_dir = work / run_key(design["spec"], recipe, seed)
    rows_path = run_dir / "rows.json"
    rows = json.loads(rows_path.read_text()) if rows_path.is_file() else []
    n_prompts = getattr(proxy, "prompts", None)
    # rows scored on another number of prompts are not this table's (rows without the field: 128, the v2 pilot's)
    have = {r["steps"]: r for r in rows if r.get("alignment") is None or r.get("prompts", 128) == n_prompts}
    fps = design["train_flops_per_sample"]
    targets = [recipe.horizon_steps(h, fps) for h in horizons]
    if all(t in have for t in targets):
        return [have[t] for t in targets]
    spec = UNetSpec.model_validate(design["spec"])
    trainer = Trainer(spec, recipe, source, run_dir, seed=seed)
    missing = min(t for t in targets if t not in have)
    if (run_dir / "checkpoint" / checkpoint.STATE).is_file():
        if checkpoint.read_state(run_dir / "checkpoint")["step"] <= missing:
            trainer.resume()
    for i, target in enumerate(targets):
        if target in have:
            continue
        trainer.train_to(target)
        t0 = time.perf_counter()
        subject = Subject.from_trainer(trainer)
        val = ValLoss().score(subject)
        res = proxy.score(subject) if i >= align_from else None
        d = res.details if res is not None else dict.fromkeys(ALIGNMENT_FIELDS)
        have[trainer.step] = {
            "train_flops": trainer.train_flops,
            "steps": trainer.step,
            "samples": trainer.samples,
            "wall_s": round(trainer.wall_s, 2),
            "eval_flops": val.flops + (res.flops if res is not None else 0.0),
            "eval_s": round(time.perf_counter() - t0, 2),
            "device": _device_name(),
            "val_loss": val.value,
            "prompts": n_prompts if res is not None else None,
            "tifa": d["tifa"],
            "tifa_se": d["tifa_se"],
            "alignment": d["alignment"],
            "alignment_se": d["alignment_se"],
            "blind_tifa": d["blind_tifa"],
            "alignment_by_category": d["alignment_by_category"],
            "per_prompt_alignment": d["per_prompt_alignment"],
        }
        trainer.save()
        _write_json(rows_path, sorted(have.values(), key=lambda r: r["steps"]))
        scored = f"tifa {d['tifa']:.3f} alignment {d['alignment']:+.3f} +- {d['alignment_se']:.3f}" if res else ""
        log(
            f"{design['id']} s{seed} {trainer.samples} samples {trainer.train_flops:.3g} FLOPs: val {val.value:.4f} {scored}"
        )
    return [have[t] for t in targets]


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, separators=(",", ":")))
    os.replace(tmp, path)


_WORKER: dict[str, Any] = {}


def _setup(precision: str) -> None:
    """Per process: threads (``UNETNAS_THREADS``), fp32 without TF32 when asked, the process group."""
    import torch

    from unetnas.train.engine import ensure_distributed

    torch.set_num_threads(int(os.environ.get("UNETNAS_THREADS", os.cpu_count() or 1)))
    if precision == "fp32":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    ensure_distributed()


def _world(recipe, first: dict[str, Any], prompts: int):
    from unetnas.proxies import WorldTifa
    from unetnas.train.source import WorldSource

    source = WorldSource(pool=recipe.world_pool, seed=0, resolution=first["latent_size"], text_len=first["text_len"])
    return source, WorldTifa(prompts=prompts, images_per_prompt=1)


def _worker_init(recipe, first: dict[str, Any], prompts: int, precision: str, deadline: float | None) -> None:
    """A spawned table worker: its own single-rank process group (a fresh port: the parent's variables, if it
    made a group itself, are not this worker's), world and proxy, kept for every run it takes. A failure here is
    kept and raised by the worker's first run (a Pool would otherwise respawn a failing worker forever)."""
    from unetnas.train.engine import _free_port

    try:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), RANK="0", WORLD_SIZE="1")
        os.environ["LOCAL_RANK"] = "0"
        _setup(precision)
        source, proxy = _world(recipe, first, prompts)
        _WORKER.update(recipe=recipe, source=source, proxy=proxy, deadline=deadline)
    except Exception as err:  # noqa: BLE001  reported by the first run of this worker
        _WORKER["error"] = f"a ground-truth worker could not start: {type(err).__name__}: {err}"


def _worker_run(
    job: tuple[dict[str, Any], int, list[float], Path, int],
) -> tuple[str, int, list[dict[str, Any]] | None]:
    """One (design, seed) run in a worker; None when the deadline passed before it started."""
    d, seed, horizons, work, align_from = job
    w = _WORKER
    if "error" in w:
        raise RuntimeError(w["error"])
    if w["deadline"] is not None and time.time() >= w["deadline"]:
        return d["id"], seed, None

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    rows = run_one(
        d,
        seed,
        recipe=w["recipe"],
        source=w["source"],
        proxy=w["proxy"],
        horizons=horizons,
        work=work,
        log=log,
        align_from=align_from,
    )
    return d["id"], seed, rows


def rows_on_disk(design: dict[str, Any], seed: int, recipe, horizons: list[float], work: Path) -> list[dict[str, Any]]:
    """The checkpoints of a run already measured in ``work`` (a prefix of ``horizons``; empty when none)."""
    path = work / run_key(design["spec"], recipe, seed) / "rows.json"
    have = {r["steps"]: r for r in json.loads(path.read_text())} if path.is_file() else {}
    out = []
    for h in horizons:
        row = have.get(recipe.horizon_steps(h, design["train_flops_per_sample"]))
        if row is None:
            break
        out.append(row)
    return out


def _run_parallel(args, recipe, first, jobs, horizons, deadline, results, write, log) -> None:
    """Train ``jobs`` over ``args.processes`` spawned workers in plan order; the table is rewritten after each run."""
    import multiprocessing as mp
    from multiprocessing.context import TimeoutError as PoolTimeout

    ctx = mp.get_context("spawn")  # fresh interpreters: no forked CUDA or OpenMP state
    init = (recipe, first, args.prompts, recipe.precision, deadline)
    pool = ctx.Pool(args.processes, initializer=_worker_init, initargs=init)
    try:
        todo = [(d, seed, horizons, args.work, args.align_from) for d, seed in jobs]
        it = pool.imap_unordered(_worker_run, todo, chunksize=1)
        for _ in todo:
            wait = None if deadline is None else max(deadline - time.time(), 0.0) + 1.0
            try:
                design, seed, rows = it.next(timeout=wait)
            except PoolTimeout:
                log("deadline: stopping the runs in flight")
                return
            if rows is not None:
                results[design, seed] = rows
                write()
    finally:
        pool.terminate()
        pool.join()


def _device_name() -> str:
    """Where a row was measured: the GPU's name, or ``cpu`` (wall seconds of one device are not another's)."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def seed_rows(out: Path, table_designs: list[dict[str, Any]], recipe, horizons: list[float], work: Path) -> int:
    """Write ``rows.json`` into ``work`` for every run of the table at ``out`` that has none there, so a table
    committed in parts resumes on a fresh clone or another machine (``runs/`` is not committed). Only a table of
    the same checkpoints and designs is read; returns the runs seeded."""
    from unetnas.errors import UserError

    table = json.loads(out.read_text())
    if table.get("meta", {}).get("horizons") != horizons:
        raise UserError(f"has checkpoints {table.get('meta', {}).get('horizons')}, not {horizons}", source=out)
    by_id = {d["id"]: d for d in table_designs}
    theirs = {d["id"]: d["spec"] for d in table["designs"]}
    n = 0
    for run in [*table.get("runs", []), *table.get("partial_runs", [])]:
        d = by_id.get(run["design"])
        if d is None or d["spec"] != theirs.get(run["design"]):  # another space's design under the same id
            continue
        path = work / run_key(d["spec"], recipe, run["seed"]) / "rows.json"
        if not path.is_file() and run["checkpoints"]:
            _write_json(path, run["checkpoints"])
            n += 1
    return n


def machine() -> dict[str, Any]:
    import torch

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def planned(args, recipe, unit: str, horizon: float, out: Path) -> dict[str, Any]:
    """What the command would run: runs, checkpoints and FLOPs (training to the last checkpoint; validation loss
    and DDIM + CFG sampling of the alignment proxy at each scored checkpoint, the answerer's pixel work left out)."""
    from unetnas.cost import cost
    from unetnas.spec import UNetSpec

    table_designs = designs(args.space)
    if args.pilot:
        keep = set(second_seed_ids(table_designs, args.pilot + 1))
        table_designs = [d for d in table_designs if d["id"] in keep]
    by_id = {d["id"]: d for d in table_designs}
    extra = [] if args.pilot else second_seed_ids(table_designs, args.extra_seeds) if args.extra_seeds else []
    only = set(filter(None, args.only.split(",")))
    jobs = [(i, s) for i, s in plan_jobs(table_designs, args.seeds, extra) if not only or i in only]
    horizons = checkpoint_horizons(horizon, args.checkpoints, args.ratio, unit, recipe.batch_size)
    scored = len(horizons) - min(args.align_from, len(horizons))
    guidance = 2 if recipe.cfg_scale != 1.0 else 1
    train = evals = 0.0
    for i, _ in jobs:
        d = by_id[i]
        fwd = cost(UNetSpec.model_validate(d["spec"])).flops
        train += recipe.horizon_flops(horizons[-1], d["train_flops_per_sample"])
        evals += len(horizons) * fwd * recipe.val_samples * len(recipe.val_timesteps)
        evals += scored * recipe.sample_steps * guidance * fwd * args.prompts
    return {
        "out": str(out),
        "designs": len(table_designs),
        "runs": len(jobs),
        "order": [f"{i}-s{s}" for i, s in jobs],
        "horizon_unit": unit,
        "horizons": horizons,
        "scored_checkpoints": scored,
        "train_flops": train,
        "eval_flops": evals,
        "hours_at_10_gflops": round((train + evals) / 1e10 / 3600, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m bench ground-truth", description=__doc__.splitlines()[0])
    ap.add_argument("--space", type=Path, default=ROOT / "space" / "tiny.yaml")
    ap.add_argument("--unit", choices=["samples", "flops"], default=None, help="horizon unit (default: the recipe's)")
    ap.add_argument("--recipe", type=Path, default=None, help="default trials/samples.yaml or trials/short.yaml")
    ap.add_argument("--horizon", type=float, default=None, help="full horizon per run, in the unit (16384 / 2.4e12)")
    ap.add_argument("--checkpoints", type=int, default=6, help="geometric checkpoints horizon/ratio^k, k < this")
    ap.add_argument("--ratio", type=float, default=2.0, help="ratio between checkpoints (2 x 6 checkpoints = 32x)")
    ap.add_argument("--prompts", type=int, default=128, help="evaluation prompts per alignment score")
    ap.add_argument("--seeds", type=int, default=2, help="seeds 0 .. N-1 for every design")
    ap.add_argument("--extra-seeds", type=int, default=12, help="designs spread over GMACs given one more seed")
    ap.add_argument("--align-from", type=int, default=0, help="score alignment from checkpoint index K on only")
    ap.add_argument("--pilot", type=int, default=0, help="only N reading designs spread over GMACs + the control")
    ap.add_argument("--only", default="", help="comma-separated design ids (default: all)")
    ap.add_argument("--out", type=Path, default=None, help="default bench/data/gt-<space>-v2[-pilot].json")
    ap.add_argument("--dry-run", action="store_true", help="print the runs and their planned FLOPs, train nothing")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "ground-truth-v2")
    ap.add_argument("--processes", type=int, default=1, help="runs trained at once, one process each")
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=None, help="override the recipe's")
    ap.add_argument("--deadline-s", type=float, default=None, help="start no run after S s; stop runs at S s")
    ap.add_argument(
        "--seed-rows",
        action="store_true",
        help="first write the runs of the --out table into --work where it has none (resume a committed table)",
    )
    args = ap.parse_args(argv)

    from unetnas.errors import UserError
    from unetnas.train.recipe import load_recipe

    recipe_path = args.recipe or DEFAULT_RECIPE[args.unit or "samples"]
    recipe = load_recipe(recipe_path)
    if args.precision is not None:  # part of the recipe, so of every run's key: fp32 and bf16 runs never mix
        recipe = recipe.model_copy(update={"precision": args.precision})
    unit = args.unit or recipe.horizon_unit
    if recipe.horizon_unit != unit:
        raise UserError(f"the recipe's horizon_unit is {recipe.horizon_unit}", field="--unit", value=unit)
    horizon = args.horizon or DEFAULT_HORIZON[unit]
    for name, value, ok in [
        ("--horizon", horizon, horizon > 0),
        ("--checkpoints", args.checkpoints, args.checkpoints >= 1),
        ("--ratio", args.ratio, args.ratio > 1),
        ("--seeds", args.seeds, args.seeds >= 1),
        ("--extra-seeds", args.extra_seeds, args.extra_seeds >= 0),
        ("--prompts", args.prompts, args.prompts >= 2),
        ("--processes", args.processes, args.processes >= 1),
        ("--deadline-s", args.deadline_s, args.deadline_s is None or args.deadline_s > 0),
    ]:
        if not ok:
            raise UserError("out of range", field=name, value=value)
    stem = args.space.stem
    out = args.out or ROOT / "bench" / "data" / f"gt-{stem}-v2{'-pilot' if args.pilot else ''}.json"

    if args.dry_run:
        print(json.dumps(planned(args, recipe, unit, horizon, out), indent=1))
        return 0

    start = time.time()
    deadline = start + args.deadline_s if args.deadline_s else None
    if args.processes == 1:
        _setup(recipe.precision)
    table_designs = designs(args.space)
    if args.pilot:
        keep = set(second_seed_ids(table_designs, args.pilot + 1))
        table_designs = [d for d in table_designs if d["id"] in keep]
    by_id = {d["id"]: d for d in table_designs}
    first = table_designs[0]["spec"]
    source, proxy = _world(recipe, first, args.prompts)  # the parent's describes the world in the table's meta
    horizons = checkpoint_horizons(horizon, args.checkpoints, args.ratio, unit, recipe.batch_size)
    extra = [] if args.pilot else second_seed_ids(table_designs, args.extra_seeds) if args.extra_seeds else []
    only = set(filter(None, args.only.split(",")))
    jobs = [(by_id[i], s) for i, s in plan_jobs(table_designs, args.seeds, extra) if not only or i in only]
    if args.seed_rows and out.is_file():
        print(f"seeded {seed_rows(out, table_designs, recipe, horizons, args.work)} runs from {out}", flush=True)
    previous = json.loads(out.read_text()) if out.is_file() else {}
    spent_before = previous.get("meta", {}).get("cost_s", 0.0)

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def rel(p: Path) -> str:
        return str(p.resolve().relative_to(ROOT)) if p.resolve().is_relative_to(ROOT) else str(p)

    results: dict[tuple[str, int], list[dict[str, Any]]] = {}

    def write() -> None:
        runs = [{"design": d["id"], "seed": s, "checkpoints": results.get((d["id"], s), [])} for d, s in jobs]
        done = [r for r in runs if len(r["checkpoints"]) == len(horizons)]
        meta = {
            "space": rel(args.space),
            "recipe": rel(Path(recipe_path)),
            "horizon_unit": unit,
            "horizons": horizons,
            "seeds": args.seeds,
            "extra_seed_designs": extra,
            "runs_planned": len(jobs),
            "pilot": args.pilot,
            "align_from": args.align_from,
            "world": source.describe(),
            "proxy": {
                "name": "tifa",
                "prompts": args.prompts,
                "images_per_prompt": 1,
                "steps": recipe.sample_steps,
                "cfg": recipe.cfg_scale,
                "foils": "all other prompts",
                "sampler": "DDIM, trailing spacing",
            },
            "machine": machine(),  # of the last writer; each row names its device ("device")
            "devices": dict(
                Counter(c.get("device", "unrecorded") for r in runs for c in r["checkpoints"]).most_common()
            ),
            "date": time.strftime("%Y-%m-%d"),
            "command": "python -m bench ground-truth " + " ".join(argv if argv is not None else []),
            "cost_s": round(spent_before + time.time() - start, 1),
            "complete": len(done) == len(jobs),
        }
        partial = [r for r in runs if 0 < len(r["checkpoints"]) < len(horizons)]
        _write_json(out, {"version": 2, "meta": meta, "designs": table_designs, "runs": done, "partial_runs": partial})

    log(
        f"{len(table_designs)} designs, {len(jobs)} runs, horizons ({unit}) {', '.join(f'{h:.4g}' for h in horizons)}"
        f" -> {out}"
    )
    depths = range(1, len(horizons) + 1) if args.pilot else [len(horizons)]  # pilot: breadth-first over checkpoints
    for depth in depths:
        if args.processes == 1:
            for d, seed in jobs:
                if deadline is not None and time.time() >= deadline:
                    break
                results[d["id"], seed] = run_one(
                    d,
                    seed,
                    recipe=recipe,
                    source=source,
                    proxy=proxy,
                    horizons=horizons[:depth],
                    work=args.work,
                    log=log,
                    align_from=args.align_from,
                )
                write()
        else:
            _run_parallel(args, recipe, first, jobs, horizons[:depth], deadline, results, write, log)
    if deadline is not None and time.time() >= deadline:  # runs stopped at the deadline: their finished checkpoints
        for d, seed in jobs:
            if len(results.get((d["id"], seed), [])) < len(horizons):
                results[d["id"], seed] = rows_on_disk(d, seed, recipe, horizons, args.work)
        write()
        log(f"deadline of {args.deadline_s:g} s reached: the table holds what finished (rerun to continue)")
    log(f"table written to {out} ({len(jobs)} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
