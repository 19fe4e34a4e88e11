"""The search's accountant: FLOPs reservations in the ledger, the leases that say who runs which rung, settlement of
what ran, and recovery of the rungs of workers that are gone. It decides nothing (``scheduler.py``) and runs nothing
(executors); ``runner.Search`` calls it around every rung:

    claim (lease ``trial:<n>``) -> reserve (training + evaluation) -> hold (the lease names the reservations)
    -> [the executor runs under a ``Heartbeat``] -> settle (what the meter says) -> give back (the lease)

A worker that dies mid-rung leaves its lease; the next worker to look settles it at what ran (the meter's last
renewal or the checkpoint's step, whichever is more) and leaves the trial to resume from its checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from unetnas.errors import UserError
from unetnas.search.budget import format_flops
from unetnas.search.executor import Meter
from unetnas.search.lease import Lease, Leases, trial_key
from unetnas.search.ledger import Ledger, Reservation
from unetnas.search.trials import TrialStore

log = logging.getLogger("unetnas.search")


class Accountant:
    """Ledger and leases of one study, seen from one worker; trial attributes written through ``store``."""

    def __init__(self, ledger: Ledger, leases: Leases, store: TrialStore, once_flops: dict[str, float]) -> None:
        self.ledger, self.leases, self.store, self.once_flops = ledger, leases, store, once_flops

    def remaining(self) -> float:
        return self.ledger.summary()["remaining"]

    # -- one-off costs ----------------------------------------------------------------------------------------------
    def charge_once(self) -> None:
        """Charge the study's one-off costs once, before its first run (the world's caption encoding: its states
        are this search's training data, encoded by the first run's worker)."""
        charged = self.store.attr("charged_once", [])
        flops = self.once_flops.get("captions", 0.0)
        if "captions" in charged or flops <= 0:
            return
        res = self.ledger.reserve(None, "text", flops, note="training and validation captions, encoded once")
        if res is None:
            raise UserError(
                f"cannot pay the {format_flops(flops)} FLOPs of caption encoding",
                field="--budget",
                value=format_flops(self.ledger.summary()["budget"]),
            )
        self.ledger.settle(res, flops)
        self.store.set_attr("charged_once", [*charged, "captions"])

    # -- one rung ---------------------------------------------------------------------------------------------------
    def claim(self, number: int, trial_id: int, rung: int) -> str | None:
        """The rung's lease key if this worker holds it now, None if another live worker does."""
        key = trial_key(number)
        return key if self.leases.claim(key, trial_number=number, trial_id=trial_id, rung=rung) else None

    def reserve(
        self, key: str, number: int, rung: int, train_flops: Callable[[], float], eval_flops: Callable[[], float]
    ) -> tuple[Reservation, Reservation] | None:
        """Reserve the rung's training and evaluation (after the one-off costs); None (nothing reserved) when they
        do not fit. On any exception (a second Ctrl-C included) nothing stays reserved and the lease is given back."""
        train_res = eval_res = None
        try:
            train = train_flops()
            self.charge_once()
            note = f"rung {rung}"
            train_res = self.ledger.reserve(number, "train", train, note=note)
            eval_res = None if train_res is None else self.ledger.reserve(number, "eval", eval_flops(), note=note)
        except BaseException:
            self.give_back(key, train_res, eval_res)
            raise
        if train_res is None or eval_res is None:
            if train_res is not None:
                self.ledger.release(train_res)
            return None
        return train_res, eval_res

    def hold(self, key: str, train: Reservation, evals: Reservation, **fields: object) -> None:
        """Write the reservations (and how to settle them: start steps, FLOPs per step, folder) into the lease."""
        self.leases.renew(key, reservations={"train": train.id, "eval": evals.id}, **fields)

    def give_back(self, key: str, *reservations: Reservation | None) -> None:
        """Release reservations that never ran and the lease."""
        for res in reservations:
            if res is not None:
                self.ledger.release(res)
        self.leases.release(key)

    def settle(self, number: int, trial_id: int, train_res: Reservation, eval_res: Reservation, meter: Meter) -> None:
        """Settle a rung at what its meter shows (at most what was reserved); the trial's account follows."""
        train = min(meter.train_flops, train_res.flops)
        evals = min(meter.eval_flops, eval_res.flops)
        for res, spent in ((train_res, train), (eval_res, evals)):
            if spent > 0:
                self.ledger.settle(res, spent)
            else:  # nothing ran (stopped before the first step, or before scoring)
                self.ledger.release(res)
        self.store.set_attrs(trial_id, flops_spent=self.ledger.trial_spent(number))

    # -- workers that are gone ----------------------------------------------------------------------------------------
    def recover_abandoned(self) -> list[int]:
        """Settle the rungs of workers that are gone (their leases expired, or their process on this host died) at
        what ran, and leave the trials to be resumed from their checkpoints; returns the trial numbers."""
        done = []
        for lease in self.leases.abandoned():
            if not self.leases.take_over(lease):
                continue
            self._settle_abandoned(lease)
            done.append(lease.trial_number)
        # a reservation no lease names: its worker died between reserving and recording it, before anything ran
        self.ledger.recover_stale(older_than_s=3 * self.leases.ttl_s, charge=False)
        return done

    def _settle_abandoned(self, lease: Lease) -> None:
        train = lease.train_flops
        if lease.folder and lease.per_step and lease.start_steps is not None:
            from unetnas.train import checkpoint

            ckpt = Path(lease.folder) / "checkpoint"
            if (ckpt / checkpoint.STATE).is_file():
                step = int(checkpoint.read_state(ckpt)["step"])
                train = max(train, (step - lease.start_steps) * lease.per_step)
        ids = lease.reservations
        if "train" in ids:
            self.ledger.settle_id(ids["train"], train)
        if "eval" in ids:
            self.ledger.settle_id(ids["eval"], lease.eval_flops)
        if lease.trial_id is None:
            return
        t = self.store.get(lease.trial_id)
        attrs: dict[str, object] = {"flops_spent": self.ledger.trial_spent(lease.trial_number)}
        if not t.state.is_finished() and t.user_attrs.get("status") in ("training", "new"):
            attrs["status"] = "paused"
        host, worker = lease.holder.split("|")[:2]
        attrs["recovered"] = [
            *t.user_attrs.get("recovered", []),
            f"rung {lease.rung}: worker {worker} on {host} gone; charged {format_flops(train + lease.eval_flops)}",
        ]
        self.store.set_attrs(lease.trial_id, **attrs)
        log.warning(
            "trial %d: worker %s gone mid-rung %s; settled what ran, the rung resumes from its checkpoint",
            lease.trial_number,
            worker,
            lease.rung,
        )
