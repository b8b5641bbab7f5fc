"""The token bucket behind the per-client rate limit (pure: a fake clock)."""

import pytest

from registry.api.ratelimit import RateLimiter


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_burst_then_one_token_per_interval():
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.check("a") for _ in range(3)] == [None, None, None]
    assert limiter.check("a") == pytest.approx(0.5)  # one token comes every 1/rate s
    clock.now += 0.25
    assert limiter.check("a") == pytest.approx(0.25)  # a refused request costs nothing
    clock.now += 0.25
    assert limiter.check("a") is None
    assert limiter.check("a") == pytest.approx(0.5)


def test_keys_are_independent_and_buckets_never_exceed_burst():
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=2, clock=clock)
    assert limiter.check("a") is None and limiter.check("a") is None
    assert limiter.check("a") is not None
    assert limiter.check("b") is None  # another client is not affected
    clock.now += 3600  # a long idle time refills only up to the burst
    assert [limiter.check("a") is None for _ in range(3)] == [True, True, False]


def test_memory_is_bounded():
    limiter = RateLimiter(rate=1.0, burst=1, clock=Clock(), max_keys=10)
    for i in range(1000):
        limiter.check(f"client-{i}")
    assert len(limiter._buckets) == 10


def test_clock_going_backwards_does_not_mint_tokens():
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock)
    assert limiter.check("a") is None
    clock.now -= 100
    assert limiter.check("a") is not None


@pytest.mark.parametrize("rate,burst", [(0, 1), (-1, 1), (1, 0)])
def test_invalid_configuration(rate, burst):
    with pytest.raises(ValueError):
        RateLimiter(rate, burst)
