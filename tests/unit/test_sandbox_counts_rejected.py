"""The sandbox's limiter counts what the real API may count: a rejected request occupies the
window too (default), or not (``count_rejected=False``). Time is a fake monotonic clock."""

from __future__ import annotations

import pytest

from dev.fakes import sandbox as sandbox_module
from dev.fakes.sandbox import SlidingWindowLimiter


@pytest.mark.parametrize(("count_rejected", "allowed_at_1_1"), [(True, False), (False, True)])
def test_a_rejected_request_keeps_the_window_full_when_it_counts(
    monkeypatch: pytest.MonkeyPatch, count_rejected: bool, allowed_at_1_1: bool
) -> None:
    now = [0.0]
    monkeypatch.setattr(sandbox_module.time, "monotonic", lambda: now[0])
    limiter = SlidingWindowLimiter(2, 1000, 100, count_rejected=count_rejected)
    assert limiter.hit("loc")[0] and limiter.hit("loc")[0]
    now[0] = 0.5
    assert not limiter.hit("loc")[0]  # 429
    now[0] = 1.1  # the two accepted ones left the window; the rejected one (0.5) has not
    assert limiter.hit("loc")[0] is True
    assert limiter.hit("loc")[0] is allowed_at_1_1


def test_the_sandbox_counts_rejected_requests_by_default() -> None:
    assert sandbox_module.SandboxServer()._limiter.count_rejected
    assert not sandbox_module.SandboxServer(rate_limit_counts_rejected=False)._limiter.count_rejected
