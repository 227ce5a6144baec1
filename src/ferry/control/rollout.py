"""Rolling updates and scaling as a pure step function, Kubernetes Deployment style.

Each reconciler tick observes an API's replicas and asks ``next_step`` what to do next;
the plan is safe to apply and then observe again. The bounds hold at every step:

- at most ``desired + max_surge`` replicas exist (terminating ones still count: they hold
  a port and memory until they have drained);
- ready replicas never drop below ``desired - max_unavailable`` through a stop in a plan;
- old replicas are stopped only as new ones become ready, or within ``max_unavailable``.

``max_surge`` rounds up and ``max_unavailable`` rounds down when resolved against the
desired count; when both come to 0, ``max_unavailable`` becomes 1, as in Kubernetes.

A new revision whose replica exits with the "cannot boot" code is not retried: the plan
stops its replicas, tops the previous revision back up, and says ``status="error"`` with
the reason and ``rollback_to``. The caller records the error and from then on targets
``rollback_to`` (or, on a first deploy where it is None, stops reconciling the API) until
the user deploys again; that is what prevents a restart loop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ferry.apispec import UpdateStrategy

__all__ = ["Plan", "Replica", "ReplicaState", "Target", "next_step", "resolve_bounds"]

ReplicaState = Literal["starting", "ready", "failed", "terminating"]
Status = Literal["live", "updating", "error"]


@dataclass(frozen=True)
class Replica:
    """One observed replica; ``cannot_boot`` marks a failure that a restart will not fix."""

    id: str
    revision: str
    state: ReplicaState
    cannot_boot: bool = False
    reason: str = ""


@dataclass(frozen=True)
class Target:
    """What the API should run: ``replicas`` copies of ``revision``."""

    revision: str
    replicas: int


@dataclass(frozen=True)
class Plan:
    """Start ``start`` replicas of ``revision`` and stop the replicas in ``stop``."""

    revision: str
    start: int = 0
    stop: tuple[str, ...] = ()
    status: Status = "live"
    reason: str = ""
    rollback_to: str | None = None

    @property
    def empty(self) -> bool:
        """True when there is nothing to start or stop."""
        return self.start == 0 and not self.stop


def resolve_bounds(policy: UpdateStrategy, desired: int) -> tuple[int, int]:
    """``(max_surge, max_unavailable)`` as replica counts for ``desired`` replicas."""
    surge = _resolve(policy.max_surge, desired, round_up=True)
    unavailable = _resolve(policy.max_unavailable, desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _resolve(value: int | str, desired: int, *, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    share = int(value.rstrip("%")) * desired  # integers, so 10% of 30 is exactly 3
    return -(-share // 100) if round_up else share // 100


def next_step(observed: Sequence[Replica], target: Target, policy: UpdateStrategy) -> Plan:
    """The next safe step from ``observed`` towards ``target``; empty when it is there."""
    surge, unavailable = resolve_bounds(policy, target.replicas)
    broken = [r for r in observed if r.revision == target.revision and r.cannot_boot]
    if broken:
        return _abandon(observed, target, surge, broken[0])
    new = [r for r in observed if r.revision == target.revision and r.state != "terminating"]
    old = [r for r in observed if r.revision != target.revision and r.state != "terminating"]
    stop = [r.id for r in (*new, *old) if r.state == "failed"]
    # an old replica that is not ready yet will never serve this target
    stop += [r.id for r in old if r.state == "starting"]
    new_ready = [r for r in new if r.state == "ready"]
    new_live = [r for r in new if r.state != "failed"]
    old_ready = [r for r in old if r.state == "ready"]
    stop += _excess_new(new_live, target.replicas)
    room = target.replicas + surge - sum(r.state != "failed" for r in observed)
    start = max(0, min(target.replicas - len(new_live), room))
    # ready replicas that may go while keeping desired - max_unavailable ready
    spare = len(old_ready) + min(len(new_ready), target.replicas) - (target.replicas - unavailable)
    stop += [r.id for r in old_ready[: max(0, spare)]]
    plan = Plan(target.revision, start, tuple(stop))
    return _with_status(plan, observed, target)


def _excess_new(live: Sequence[Replica], desired: int) -> list[str]:
    # scaling down: the replicas that are not serving yet go first
    ranked = sorted(live, key=lambda r: r.state == "ready")
    return [r.id for r in ranked[: max(0, len(live) - desired)]]


def _with_status(plan: Plan, observed: Sequence[Replica], target: Target) -> Plan:
    ready = sum(r.revision == target.revision and r.state == "ready" for r in observed)
    settled = plan.empty and ready == target.replicas and len(observed) == target.replicas
    if settled:
        return plan
    reason = f"{target.revision}: {ready} ready of {target.replicas} desired"
    return Plan(plan.revision, plan.start, plan.stop, "updating", reason)


def _abandon(observed: Sequence[Replica], target: Target, surge: int, broken: Replica) -> Plan:
    """Stop the revision that cannot boot and top the previous one back up."""
    stop = tuple(
        r.id
        for r in observed
        if r.revision == target.revision and r.state in ("starting", "failed")
    )
    serving = Counter(
        r.revision for r in observed if r.revision != target.revision and r.state == "ready"
    )
    previous = serving.most_common(1)[0][0] if serving else None
    reason = f"revision {target.revision} cannot boot: {broken.reason or 'replica ' + broken.id}"
    if previous is None:
        return Plan(target.revision, 0, stop, "error", reason)
    alive = [r for r in observed if r.state in ("starting", "ready") and r.id not in stop]
    present = sum(r.state != "failed" for r in observed)
    start = max(0, min(target.replicas - len(alive), target.replicas + surge - present))
    return Plan(previous, start, stop, "error", reason + f"; keeping {previous}", previous)
