"""What a pass remembers between its steps: small, JSON-shaped, and nothing that grows with the table.

A step's result is a `PassState`; the durable function checkpoints it (a few hundred bytes: the
cursor or offset, the prune scan's position and the counts), the local CLI writes it to a file. From
a state the next step knows where to go on, whichever process runs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

# A prune that would tombstone more than half of what it checked (past a few items) smells of a secret
# key of another Clerk instance: refuse rather than soft-delete every user.
PRUNE_SAFETY_RATIO = 0.5
PRUNE_SAFETY_MIN = 10


class Phase(StrEnum):
    LIST = "list"  # page through Clerk, writing what changed
    PRUNE = "prune"  # walk the table, tombstoning what Clerk no longer has (opt-in)
    DONE = "done"


class ReconcileError(Exception):
    """The pass could not go on; `state` holds where it stopped and what it had done."""

    def __init__(self, message: str, state: PassState | None = None) -> None:
        super().__init__(message)
        self.state = state


@dataclass
class Counts:
    """What one kind of item (users, organizations, memberships) went through in a pass."""

    seen: int = 0  # entries Clerk listed
    created: int = 0
    updated: int = 0
    unchanged: int = 0  # the table already holds this exact version: no write
    skipped: int = 0  # not written: the table holds a newer copy or a tombstone, or Clerk's entry is invalid
    pruned: int = 0
    checked: int = 0  # live table items the prune asked Clerk about (the mass-prune guard's base)


@dataclass
class PassState:
    """One entity's pass (users, or organizations with their memberships), between two steps."""

    entity: str
    dry_run: bool = False
    prune: bool = False
    started_ms: int = 0  # when the pass began (items written since are known to Clerk)
    phase: Phase = Phase.LIST
    cursor: str | None = None  # users: the last user listed (Clerk's `starting_after`)
    offset: int = 0  # organizations: offset of the next page
    scan_key: dict[str, Any] | None = None  # prune: DynamoDB's LastEvaluatedKey of the last page
    steps: int = 0
    requests: int = 0  # Clerk requests sent by the steps of this pass
    wait_seconds: float = 0.0  # the step asks to wait this long before the next (rate limit)
    counts: dict[str, Counts] = field(default_factory=dict)

    @classmethod
    def start(cls, entity: str, kinds: tuple[str, ...], options: ReconcileOptions) -> PassState:
        """A pass of `entity` (its counts kept for `kinds`) as `options` ask, beginning now."""
        counts = {kind: Counts() for kind in kinds}
        return cls(
            entity=entity, dry_run=options.dry_run, prune=options.prune, started_ms=epoch_ms(), counts=counts
        )

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    @property
    def synced_since(self) -> str:
        """The pass's start as `syncedAt`: an item whose `syncedAt` is not below it was written since."""
        return iso_ms(self.started_ms)

    def refuse_mass_prune(self, kind: str, batch: int) -> None:
        """Raise ReconcileError when the prune, with this batch's `batch` candidates, would tombstone more
        than PRUNE_SAFETY_RATIO of the live `kind` it checked (past PRUNE_SAFETY_MIN). Checked before each
        batch's tombstones, on the running totals, so a wrong key is refused at its first batch."""
        counts = self.counts[kind]
        candidates = counts.pruned + batch
        if candidates > PRUNE_SAFETY_MIN and candidates > PRUNE_SAFETY_RATIO * counts.checked:
            raise ReconcileError(
                f"refusing to prune {candidates} of {counts.checked} {kind}: is CLERK_SECRET_KEY the key of "
                "the Clerk instance this table mirrors?",
                self,
            )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["phase"] = self.phase.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PassState:
        values = dict(data)
        values["phase"] = Phase(values.get("phase", Phase.LIST))
        values["counts"] = {kind: Counts(**counts) for kind, counts in (values.get("counts") or {}).items()}
        return cls(**values)

    def summary(self) -> dict[str, Any]:
        """The counts and where the pass is, for logs and answers."""
        return {
            "entity": self.entity,
            "phase": self.phase.value,
            "dryRun": self.dry_run,
            "prune": self.prune,
            "steps": self.steps,
            "requests": self.requests,
            **{kind: asdict(counts) for kind, counts in self.counts.items()},
        }


def epoch_ms() -> int:
    return int(time.time() * 1000)


def iso_ms(epoch_ms: int) -> str:
    """`syncedAt`'s format for an epoch-ms time: items synced since a pass began compare greater."""
    return (
        datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


@dataclass(frozen=True)
class ReconcileOptions:
    """How a pass goes; the users' and the organizations' passes take the same options."""

    dry_run: bool = False  # count what would be written, write nothing
    prune: bool = False  # tombstone what Clerk no longer has (after the whole listing only)
    now_ms: Callable[[], int] = epoch_ms  # the deletion time of a pruned item
    write_threads: int = 8  # conditional writes in flight at once (botocore clients are thread-safe)
    # Whether a step may read the next Clerk page while it applies its own (engine.ReadAhead): always in
    # one process; the durable function answers whether the step that takes the page will still run in
    # this invocation, so a page read ahead is not wasted when the invocation ends.
    read_ahead: Callable[[], bool] = lambda: True
