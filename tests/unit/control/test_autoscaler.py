"""Cortex autoscaler semantics, one table row per rule."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest

from ferry.apispec import Autoscaling
from ferry.control.autoscaler import (
    Recommendation,
    Sample,
    average_in_flight,
    desired_replicas,
)

NOW = 10_000.0


def steady(in_flight: float, seconds: int = 60) -> list[Sample]:
    """One sample every 10 s over the last ``seconds``, all at ``in_flight``."""
    return [Sample(NOW - age, in_flight) for age in range(0, seconds, 10)]


def recs(*pairs: tuple[float, int]) -> list[Recommendation]:
    """Recommendations made ``age`` seconds ago."""
    return [Recommendation(NOW - age, replicas) for age, replicas in pairs]


@dataclass(frozen=True)
class Case:
    id: str
    current: int
    samples: list[Sample]
    expected: int
    policy: dict[str, Any] = field(default_factory=dict)
    history: list[Recommendation] = field(default_factory=list)
    started_at: float | None = None
    reason: str = ""


CASES = [
    Case("steady-state", current=4, samples=steady(4), expected=4),
    Case("steady-state-fractional-load", current=4, samples=steady(3.5), expected=4),
    Case(
        "scale-up-limited-by-factor",
        current=4,
        samples=steady(40),
        expected=6,
        reason="limited by max_upscale_factor 1.5 to 6",
    ),
    Case(
        "scale-up-within-factor",
        current=4,
        samples=steady(5),
        expected=5,
        reason="recommend 5",
    ),
    Case(
        "scale-up-always-allows-one",
        current=1,
        samples=steady(10),
        expected=2,
        policy={"max_upscale_factor": 1.01},
    ),
    Case(
        "scale-down-limited-by-factor",
        current=10,
        samples=steady(1),
        expected=8,
        reason="limited by max_downscale_factor 0.75 to 8",
    ),
    Case(
        "scale-down-always-allows-one",
        current=2,
        samples=steady(0),
        expected=1,
        policy={"max_downscale_factor": 0.99},
    ),
    Case(
        "scale-down-to-zero-load-stops-at-min",
        current=2,
        samples=steady(0),
        expected=1,
    ),
    Case(
        "upscale-tolerance-band",
        current=20,
        samples=steady(20.9),
        expected=20,
        reason="within upscale_tolerance 0.05 of 20",
    ),
    Case(
        "just-above-upscale-tolerance",
        current=20,
        samples=steady(21.1),
        expected=22,
    ),
    Case(
        "downscale-tolerance-band",
        current=20,
        samples=steady(19.1),
        expected=20,
        reason="within downscale_tolerance 0.05 of 20",
    ),
    Case(
        "just-below-downscale-tolerance",
        current=20,
        samples=steady(18.9),
        expected=19,
    ),
    Case(
        "upscale-stabilization-holds-at-lowest-recent",
        current=3,
        samples=steady(6),
        history=recs((50, 3), (20, 5)),
        expected=3,
        reason="held at 3 by upscale_stabilization_period 60s",
    ),
    Case(
        "upscale-stabilization-partial",
        current=3,
        samples=steady(6),
        history=recs((50, 4), (20, 5)),
        expected=4,
    ),
    Case(
        "upscale-after-stabilization-period",
        current=3,
        samples=steady(6),
        history=recs((70, 3), (50, 5)),
        expected=5,
    ),
    Case(
        "downscale-stabilization-holds-at-highest-recent",
        current=10,
        samples=steady(1),
        history=recs((240, 10), (120, 9)),
        expected=10,
        reason="held at 10 by downscale_stabilization_period 300s",
    ),
    Case(
        "downscale-stabilization-partial",
        current=10,
        samples=steady(1),
        history=recs((400, 10), (240, 9), (120, 8)),
        expected=9,
    ),
    Case(
        "downscale-after-stabilization-period",
        current=10,
        samples=steady(1),
        history=recs((301, 10), (200, 8)),
        expected=8,
    ),
    Case(
        "no-scale-up-right-after-start",
        current=2,
        samples=steady(10),
        started_at=NOW - 30,
        expected=2,
        reason="no scale-up in the first 60s",
    ),
    Case(
        "no-scale-down-right-after-start",
        current=4,
        samples=steady(0),
        started_at=NOW - 200,
        expected=4,
        reason="no scale-down in the first 300s",
    ),
    Case(
        "clamped-to-max",
        current=4,
        samples=steady(100),
        policy={"max_replicas": 5},
        expected=5,
        reason="clamped to [1, 5]",
    ),
    Case(
        "clamped-to-min",
        current=4,
        samples=steady(0),
        policy={"min_replicas": 3},
        expected=3,
    ),
    Case(
        "current-above-max-is-clamped-at-once",
        current=12,
        samples=steady(100),
        policy={"max_replicas": 5},
        history=recs((10, 12)),
        expected=5,
        reason="12 replicas is outside max_replicas 5",
    ),
    Case(
        "current-zero-starts-min",
        current=0,
        samples=[],
        policy={"min_replicas": 2},
        expected=2,
        reason="0 replicas is outside min_replicas 2",
    ),
    Case(
        "empty-samples-keep-current",
        current=3,
        samples=[],
        expected=3,
        reason="no load samples in the last 60s; keeping 3",
    ),
    Case(
        "samples-outside-window-ignored",
        current=3,
        samples=[Sample(NOW - 60, 100), Sample(NOW - 300, 100)],
        expected=3,
        reason="no load samples",
    ),
    Case(
        "window-averaging",
        current=2,
        # 60 s window: six samples averaging 3; the one at -60 s is outside
        samples=[
            *steady(1, seconds=30),
            *[Sample(NOW - a, 5) for a in (30, 40, 50)],
            Sample(NOW - 60, 1000),
        ],
        expected=3,
        reason="avg in-flight 3 ",
    ),
    Case(
        "short-window",
        current=2,
        samples=[Sample(NOW, 6), Sample(NOW - 10, 6), Sample(NOW - 20, 0)],
        policy={"window": "20s"},
        expected=3,
    ),
    Case(
        "fractional-target-concurrency",
        current=4,
        samples=steady(3),
        policy={"target_replica_concurrency": 0.5},
        expected=6,
    ),
    Case(
        "fractional-target-in-band",
        current=6,
        samples=steady(3),
        policy={"target_replica_concurrency": 0.5},
        expected=6,
    ),
    Case(
        "target-above-one",
        current=2,
        samples=steady(24),
        policy={"target_replica_concurrency": 8, "max_upscale_factor": 2},
        expected=3,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_desired_replicas(case: Case) -> None:
    policy = Autoscaling.model_validate(case.policy)
    decision = desired_replicas(
        policy, case.samples, case.current, NOW, case.history, started_at=case.started_at
    )
    assert decision.replicas == case.expected, decision.reason
    assert case.reason in decision.reason


def test_decision_records_the_recommendation_and_prunes_history() -> None:
    policy = Autoscaling()
    history = recs((1000, 7), (200, 6), (30, 5))
    decision = desired_replicas(policy, steady(40), 4, NOW, history)
    assert decision.recommendation == Recommendation(NOW, 6)
    assert decision.history == (*history[1:], Recommendation(NOW, 6))
    assert decision.avg_in_flight == 40
    # the recommendation is recorded before stabilization, the request after it
    assert decision.replicas == 5


def test_no_samples_records_nothing() -> None:
    history = recs((30, 5))
    decision = desired_replicas(Autoscaling(), [], 5, NOW, history)
    assert decision.recommendation is None
    assert decision.history == tuple(history)


def test_load_ramp_converges_with_default_policy() -> None:
    """A sustained load of 20 in flight, ticking every 10 s from 1 replica."""
    policy = Autoscaling(max_replicas=50)
    replicas, history = 1, ()
    started = NOW - 3600
    trace = []
    for tick in range(60):
        now = NOW + tick * 10
        samples = [Sample(now - age, 20) for age in range(0, 60, 10)]
        decision = desired_replicas(policy, samples, replicas, now, history, started_at=started)
        replicas, history = decision.replicas, decision.history
        trace.append(replicas)
    assert trace[-1] == 20
    # each step is bounded by max_upscale_factor (and +1 always allowed)
    for before, after in itertools.pairwise(trace):
        assert after <= max(before + 1, -(-before * 3 // 2))


def test_average_in_flight_window_bounds() -> None:
    samples = [Sample(NOW - 60, 100), Sample(NOW - 59.9, 1), Sample(NOW, 3), Sample(NOW + 1, 50)]
    assert average_in_flight(samples, NOW, 60) == 2
    assert average_in_flight([], NOW, 60) is None
