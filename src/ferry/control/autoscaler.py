"""Cortex's request-based autoscaler, as a pure function of load samples and history.

Each tick (about every 10 s) the reconciler passes the in-flight samples it has collected,
the replica count it currently requests, the clock, and the recommendations this function
returned before. The rules are Cortex v0.31's, in Cortex's order:

1. average the total in-flight requests over ``window``;
2. raw = average / ``target_replica_concurrency``; recommendation = ceil(raw);
3. stay put while raw is within ``downscale_tolerance`` below or ``upscale_tolerance``
   above the current count;
4. move at most to ``ceil(current * max_downscale_factor)`` / ``ceil(current *
   max_upscale_factor)``, always allowing a step of one;
5. clamp to ``[min_replicas, max_replicas]`` and record the recommendation;
6. scale down no lower than the highest recommendation of the last
   ``downscale_stabilization_period``, and up no higher than the lowest of the last
   ``upscale_stabilization_period`` (Kubernetes HPA style), and not at all within that
   period after the autoscaler started watching the API.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ferry.apispec import Autoscaling

__all__ = ["Decision", "Recommendation", "Sample", "average_in_flight", "desired_replicas"]


@dataclass(frozen=True)
class Sample:
    """Total requests in flight (processing + queued) across an API's replicas at ``at``."""

    at: float
    in_flight: float


@dataclass(frozen=True)
class Recommendation:
    """What one tick recommended, before stabilization; the next ticks' history."""

    at: float
    replicas: int


@dataclass(frozen=True)
class Decision:
    """The replica count to request now, and why (shown by ``ferry describe``).

    ``history`` is the recommendations to pass to the next tick: the given ones plus this
    tick's, less those older than both stabilization periods.
    """

    replicas: int
    reason: str
    recommendation: Recommendation | None = None
    history: tuple[Recommendation, ...] = ()
    avg_in_flight: float | None = None


def average_in_flight(samples: Sequence[Sample], now: float, window: float) -> float | None:
    """Mean in-flight over samples taken in ``(now - window, now]``; None if there are none."""
    recent = [s.in_flight for s in samples if now - window < s.at <= now]
    return sum(recent) / len(recent) if recent else None


def desired_replicas(
    policy: Autoscaling,
    samples: Sequence[Sample],
    current: int,
    now: float,
    history: Sequence[Recommendation] = (),
    *,
    started_at: float | None = None,
) -> Decision:
    """How many replicas ``policy`` asks for now; ``started_at`` is when watching began.

    A count outside ``[min_replicas, max_replicas]`` (nothing running yet, or a policy that
    changed) is clamped at once, without waiting for load. Without samples in the window
    the count stays as it is.
    """
    kept = _prune(history, now, policy)
    bounded = min(max(current, policy.min_replicas), policy.max_replicas)
    if bounded != current:
        limit = "min_replicas" if bounded > current else "max_replicas"
        return Decision(bounded, f"{current} replicas is outside {limit} {bounded}", None, kept)
    average = average_in_flight(samples, now, policy.window)
    if average is None:
        reason = f"no load samples in the last {policy.window:g}s; keeping {current}"
        return Decision(current, reason, None, kept)
    target, notes = _recommend(policy, average, current)
    recommendation = Recommendation(now, target)
    kept = (*kept, recommendation)
    replicas = _stabilize(policy, target, current, kept, now, started_at, notes)
    return Decision(replicas, "; ".join(notes), recommendation, kept, average)


def _recommend(policy: Autoscaling, average: float, current: int) -> tuple[int, list[str]]:
    raw = average / policy.target_replica_concurrency
    target = math.ceil(raw)
    notes = [
        f"avg in-flight {average:.4g} / target {policy.target_replica_concurrency:g} "
        f"per replica = {raw:.4g}"
    ]
    if current * (1 - policy.downscale_tolerance) < raw < current:
        target = current
        notes.append(f"within downscale_tolerance {policy.downscale_tolerance:g} of {current}")
    elif current < raw < current * (1 + policy.upscale_tolerance):
        target = current
        notes.append(f"within upscale_tolerance {policy.upscale_tolerance:g} of {current}")
    # the factors limit each step, but a step of one is always allowed
    floor = min(current - 1, math.ceil(current * policy.max_downscale_factor))
    ceiling = max(current + 1, math.ceil(current * policy.max_upscale_factor))
    if target < floor:
        target = floor
        notes.append(f"limited by max_downscale_factor {policy.max_downscale_factor:g} to {floor}")
    elif target > ceiling:
        target = ceiling
        notes.append(f"limited by max_upscale_factor {policy.max_upscale_factor:g} to {ceiling}")
    if target < policy.min_replicas or target > policy.max_replicas:
        target = min(max(target, policy.min_replicas), policy.max_replicas)
        notes.append(f"clamped to [{policy.min_replicas}, {policy.max_replicas}]")
    notes.append(f"recommend {target}")
    return target, notes


def _stabilize(
    policy: Autoscaling,
    target: int,
    current: int,
    history: Sequence[Recommendation],
    now: float,
    started_at: float | None,
    notes: list[str],
) -> int:
    if target < current:
        period = policy.downscale_stabilization_period
        if started_at is not None and now - started_at < period:
            notes.append(f"no scale-down in the first {period:g}s; keeping {current}")
            return current
        highest = min(max(r.replicas for r in history if now - r.at <= period), current)
        if target < highest:
            notes.append(f"held at {highest} by downscale_stabilization_period {period:g}s")
            return highest
    elif target > current:
        period = policy.upscale_stabilization_period
        if started_at is not None and now - started_at < period:
            notes.append(f"no scale-up in the first {period:g}s; keeping {current}")
            return current
        lowest = max(min(r.replicas for r in history if now - r.at <= period), current)
        if target > lowest:
            notes.append(f"held at {lowest} by upscale_stabilization_period {period:g}s")
            return lowest
    return target


def _prune(
    history: Sequence[Recommendation], now: float, policy: Autoscaling
) -> tuple[Recommendation, ...]:
    horizon = max(policy.downscale_stabilization_period, policy.upscale_stabilization_period)
    return tuple(r for r in history if now - r.at <= horizon)
