"""The admission sketch (pure logic): counts, the doorkeeper, saturation, aging, and its error rate."""

from __future__ import annotations

import pytest

from mobius_cache._admission import Admission, FrequencySketch


def test_counts_accesses_and_the_doorkeeper_takes_the_first() -> None:
    sketch = FrequencySketch(width=1024)
    assert sketch.estimate("search:q:results:1") == 0
    sketch.record("search:q:results:1")
    assert sketch.estimate("search:q:results:1") == 1
    for _ in range(4):
        sketch.record("search:q:results:1")
    assert sketch.estimate("search:q:results:1") == 5
    assert sketch.estimate("search:other:results:1") == 0


def test_counters_saturate() -> None:
    sketch = FrequencySketch(width=64, sample_size=10_000)
    for _ in range(100):
        sketch.record(7)
    assert sketch.estimate(7) == 16  # doorkeeper + a 4-bit counter


def test_aging_halves_counts_and_clears_the_doorkeeper() -> None:
    sketch = FrequencySketch(width=256, sample_size=100)
    for _ in range(9):
        sketch.record("hot")
    sketch.record("once")
    assert sketch.estimate("hot") == 9 and sketch.estimate("once") == 1
    for i in range(90):  # reach the sample size: one halving
        sketch.record(("filler", i))
    assert sketch.resets == 1
    assert sketch.estimate("once") == 0  # the doorkeeper forgot it
    assert sketch.estimate("hot") == 0  # ... and hot must pass the door again,
    sketch.record("hot")
    assert sketch.estimate("hot") == 1 + 8 // 2  # then its halved count shows


def test_unseen_keys_are_rarely_overestimated() -> None:
    sketch = FrequencySketch(width=4096, sample_size=100_000)  # no aging within this test
    for i in range(4000):
        sketch.record(f"seen:{i}")
        sketch.record(f"seen:{i}")
    wrong = sum(sketch.estimate(f"unseen:{i}") >= 2 for i in range(10_000))
    assert wrong < 200, f"{wrong} of 10000 unseen keys look popular"
    assert all(sketch.estimate(f"seen:{i}") >= 2 for i in range(4000))  # never under-counts


def test_admission_declines_one_hit_wonders() -> None:
    gate = Admission(threshold=2, sketch=FrequencySketch(width=1024))
    gate.record("api:v1:a:1")
    assert not gate.admit("api:v1:a:1")
    gate.record("api:v1:a:1")
    assert gate.admit("api:v1:a:1")
    assert (gate.admitted, gate.declined) == (1, 1)


def test_threshold_one_admits_everything() -> None:
    gate = Admission(threshold=1)
    assert gate.admit("never-recorded")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 1000}, "power of two"),
        ({"width": 8}, "power of two"),
        ({"depth": 0}, "depth"),
        ({"depth": 5}, "depth"),
        ({"sample_size": 0}, "sample_size"),
    ],
)
def test_bad_parameters_are_refused_clearly(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FrequencySketch(**kwargs)


def test_bad_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="threshold"):
        Admission(threshold=0)
