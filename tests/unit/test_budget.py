"""The upstream budget's arithmetic and its client-side lease pool (narrow unit tests: fake clocks).

Over the wire (DynamoDB in moto, the sandbox, the enricher handler): tests/integration/test_budget.py.
"""

from __future__ import annotations

from collections import deque

import pytest

from appointment_enricher.budget.base import (
    BudgetThrottled,
    DailyBudgetExhausted,
    Lease,
    Limits,
    State,
    correct,
    decide,
    limits_from_headers,
    utc_day,
)
from appointment_enricher.budget.memory import MemoryBudget
from appointment_enricher.budget.spend import Spender, receiving

T0 = 1_780_000_000.0  # a fixed epoch, mid-day UTC


def grants_over(seconds: float, step: float, lease: int, limits: Limits) -> list[float]:
    """Greedy consumers asking every ``step`` seconds: the times of every granted token."""
    state, times, now = State(), [], T0
    while now < T0 + seconds:
        lease_, state = decide(state, lease, now, limits)
        times.extend([now] * lease_.tokens)
        now += step
    return times


@pytest.mark.parametrize("lease", [1, 3, 5])
def test_no_window_of_the_interval_ever_sees_more_than_the_limit_and_the_rate_is_the_fill(
    lease: int,
) -> None:
    limits = Limits()
    times = grants_over(60, 0.01, lease, limits)
    window: deque[float] = deque()
    for t in times:
        window.append(t)
        while t - window[0] >= limits.interval_seconds:
            window.popleft()
        assert len(window) <= limits.max_requests
    assert len(times) / 60 == pytest.approx(limits.fill * 10, rel=0.02)  # + the first burst


def test_a_full_bucket_says_how_long_until_a_lease_fits() -> None:
    limits = Limits()
    state = State(tat=T0 + limits.ahead, day=utc_day(T0), used=10)
    lease, same = decide(state, 5, T0, limits)
    assert (lease.tokens, same) == (0, state)
    assert lease.wait == pytest.approx(limits.spacing)
    lease, _ = decide(state, 5, T0 + lease.wait, limits)
    assert lease.tokens == 1  # a slot freed: the lease shrinks to what fits


def test_the_daily_quota_stops_leases_until_the_utc_midnight() -> None:
    limits = Limits(daily=10)
    lease, _ = decide(State(day=utc_day(T0), used=10), 5, T0, limits)
    assert lease.daily_exhausted and lease.tokens == 0
    midnight = (T0 // 86400 + 1) * 86400
    assert lease.wait == pytest.approx(midnight - T0)
    lease, state = decide(State(day=utc_day(T0), used=10), 5, midnight + 1, limits)
    assert lease.tokens == 5 and state.used == 5  # a new day


def test_remaining_zero_closes_the_bucket_one_window_slot_past_its_ceiling() -> None:
    limits = Limits()
    state = correct(State(tat=T0, day=utc_day(T0)), {"X-RateLimit-Remaining": "0"}, T0, limits)
    assert state is not None
    assert state.tat == pytest.approx(T0 + limits.ahead + 0.1)
    assert decide(state, 1, T0, limits)[0].tokens == 0
    assert correct(State(tat=T0, day=utc_day(T0)), {"X-RateLimit-Remaining": "40"}, T0, limits) is None


def test_daily_remaining_corrects_only_a_real_gap() -> None:
    limits = Limits()
    state = State(tat=T0, day=utc_day(T0), used=1000)
    assert correct(state, {"X-RateLimit-Daily-Remaining": str(200_000 - 1500)}, T0, limits) is None
    raised = correct(state, {"X-RateLimit-Daily-Remaining": "0"}, T0, limits)
    assert raised is not None and raised.used == 200_000


def test_a_response_that_says_nothing_new_costs_no_write_even_on_a_new_day() -> None:
    """A location first seen through a container's own share has no bucket item yet (or one from
    yesterday): ordinary headers must not write one just to record the day."""
    headers = {"X-RateLimit-Remaining": "99", "X-RateLimit-Daily-Remaining": str(200_000 - 1)}
    assert correct(State(), headers, T0, Limits()) is None
    yesterday = State(tat=T0 - 86_400, day=utc_day(T0 - 86_400), used=5_000)
    assert correct(yesterday, headers, T0, Limits()) is None


def test_headers_size_the_bucket_but_never_above_the_documented_limits() -> None:
    smaller = limits_from_headers(
        {
            "X-RateLimit-Max": "50",
            "X-RateLimit-Interval-Milliseconds": "20000",
            "X-RateLimit-Limit-Daily": "9",
        },
        Limits(),
    )
    assert (smaller.max_requests, smaller.interval_seconds, smaller.daily) == (50, 20.0, 9)
    larger = limits_from_headers(
        {"X-RateLimit-Max": "5000", "X-RateLimit-Interval-Milliseconds": "1", "X-RateLimit-Limit-Daily": "x"},
        Limits(),
    )
    assert (larger.max_requests, larger.interval_seconds, larger.daily) == (100, 10.0, 200_000)


class Clocks:
    def __init__(self) -> None:
        self.t = 0.0
        self.slept: list[float] = []

    def epoch(self) -> float:
        return T0 + self.t

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


def spender(clocks: Clocks, budget: MemoryBudget, **kwargs: float) -> Spender:
    return Spender(budget, epoch=clocks.epoch, monotonic=clocks.monotonic, sleep=clocks.sleep, **kwargs)  # type: ignore[arg-type]


def test_two_containers_share_one_bucket_and_a_short_wait_is_waited() -> None:
    clocks, shared = Clocks(), MemoryBudget()
    one, two = spender(clocks, shared, lease=Limits().burst), spender(clocks, shared)
    for _ in range(Limits().burst):
        one.take("loc", deadline=100)  # one lease of the whole burst
    two.take("loc", deadline=100)  # the bucket is full: waits one slot, not a window
    assert clocks.slept == [pytest.approx(Limits().spacing)]


def test_a_long_wait_or_one_past_the_deadline_is_throttled_with_when_to_come_back() -> None:
    clocks, shared = Clocks(), MemoryBudget()
    shared.observe("loc", {"X-RateLimit-Remaining": "0"}, now=clocks.epoch(), limits=Limits())
    with pytest.raises(BudgetThrottled) as caught:
        spender(clocks, shared, max_wait=0.1).take("loc", deadline=100)
    assert caught.value.retry_after == pytest.approx(0.1 + Limits().spacing)
    with pytest.raises(BudgetThrottled):
        spender(clocks, shared, max_wait=5).take("loc", deadline=0.05)
    assert clocks.slept == []
    spender(clocks, shared).take("other", deadline=100)  # another location is not held up


def test_a_spent_day_raises_daily_budget_exhausted() -> None:
    clocks, shared = Clocks(), MemoryBudget()
    shared.observe("loc", {"X-RateLimit-Daily-Remaining": "0"}, now=clocks.epoch(), limits=Limits())
    with pytest.raises(DailyBudgetExhausted) as caught:
        spender(clocks, shared).take("loc", deadline=100)
    assert caught.value.retry_after > 3600


def test_unused_tokens_of_a_lease_expire() -> None:
    clocks, shared = Clocks(), MemoryBudget()
    one = spender(clocks, shared, lease_seconds=0.5)
    one.take("loc", deadline=100)
    clocks.t += 1.0
    one.take("loc", deadline=100)  # the old lease's four tokens are void: a new lease
    state = shared._states["loc"]  # what the bucket counted
    assert state.used == 10


def test_max_wait_bounds_the_waits_together_not_each() -> None:
    """Other containers take each slot as it frees: this one gives up after ``max_wait`` in all."""
    clocks, shared = Clocks(), MemoryBudget()
    rival = spender(clocks, shared, lease=1)
    mine = spender(clocks, shared, max_wait=0.25)
    for _ in range(Limits().burst):
        rival.take("loc", deadline=100)
    rivals_left = [5]

    def sleep(seconds: float) -> None:
        clocks.sleep(seconds)
        if rivals_left[0]:
            rivals_left[0] -= 1
            rival.take("loc", deadline=100)

    mine.sleep = sleep
    with pytest.raises(BudgetThrottled):
        mine.take("loc", deadline=100)
    assert sum(clocks.slept) <= 0.25


def test_handed_back_work_gets_places_one_token_apart() -> None:
    clocks, shared = Clocks(), MemoryBudget()
    spender(clocks, shared, lease=Limits().burst).take("loc", deadline=100)
    queued = spender(clocks, shared, max_wait=0.0, queue=True)
    waits = []
    for _ in range(3):
        with receiving(1), pytest.raises(BudgetThrottled) as caught:
            queued.take("loc", deadline=100)
        waits.append(caught.value.retry_after)
    spacing = Limits().spacing
    assert waits == [pytest.approx(2 * spacing), pytest.approx(3 * spacing), pytest.approx(4 * spacing)]


def test_work_on_its_first_try_takes_a_place_at_once_behind_a_known_backlog() -> None:
    """A backlog's first pass holds no batch: once this container has taken a place in the
    location's queue, a message on its first receive that finds no budget takes its place without
    sleeping; one that came back at its place waits the short wait for its token (up to
    ``max_wait``), and so does first-try work while no backlog is known (a short burst)."""
    clocks, shared = Clocks(), MemoryBudget()
    rival = spender(clocks, shared, lease=Limits().burst)
    rival.take("loc", deadline=100)  # the bucket is full for one token's time
    queued = spender(clocks, shared, lease=1, max_wait=1.0, queue=True)
    with receiving(1):
        queued.take("loc", deadline=100)  # no backlog known: waits one token, is served
    assert clocks.slept == [pytest.approx(Limits().spacing)]
    with pytest.raises(BudgetThrottled):  # work near its deadline: a place in the queue, now known
        queued.take("loc", deadline=clocks.monotonic() + 0.01)
    before = len(clocks.slept)
    with receiving(1), pytest.raises(BudgetThrottled) as caught:
        queued.take("loc", deadline=100)
    assert len(clocks.slept) == before  # no wait: straight to its place, behind the first
    assert caught.value.retry_after > Limits().place_spacing
    with receiving(2):
        queued.take("loc", deadline=100)  # back at its place: waits for its token
    assert len(clocks.slept) > before


def test_work_back_at_its_place_that_misses_its_token_comes_back_soon_not_at_the_end() -> None:
    """Its place was spent without a request; at the end of the queue it would leave a hole
    there too. Back in the bucket's short wait, it keeps the backlog asking."""
    from appointment_enricher.budget.spend import RETURN_RETRY_SECONDS  # noqa: PLC0415

    clocks, shared = Clocks(), MemoryBudget()
    rival = spender(clocks, shared, lease=Limits().burst)
    rival.take("loc", deadline=100)  # the bucket is full for one token's time
    queued = spender(clocks, shared, lease=1, max_wait=0.0, queue=True)
    with receiving(1), pytest.raises(BudgetThrottled) as first:
        queued.take("loc", deadline=100)  # a place: the container now knows the backlog
    with receiving(2), pytest.raises(BudgetThrottled) as back:
        queued.take("loc", deadline=100)
    assert back.value.retry_after == pytest.approx(Limits().spacing)  # the bucket's own wait
    assert back.value.retry_after < RETURN_RETRY_SECONDS
    with receiving(1), pytest.raises(BudgetThrottled) as new:
        queued.take("loc", deadline=100)  # new work still queues behind the first place
    assert new.value.retry_after == pytest.approx(first.value.retry_after + Limits().place_spacing)
    with receiving(3), pytest.raises(BudgetThrottled) as again:
        queued.take("loc", deadline=100)  # missed again after its short wait: a place, only once
    assert again.value.retry_after == pytest.approx(new.value.retry_after + Limits().place_spacing)
    starved = spender(clocks, NeverGrants(), max_wait=0.0, queue=True)  # the bucket says 60 s
    with receiving(1), pytest.raises(BudgetThrottled):
        starved.take("loc", deadline=100)
    with receiving(2), pytest.raises(BudgetThrottled) as long:
        starved.take("loc", deadline=100)  # a long wait: a place (after the first one's)
    assert long.value.retry_after >= 60.0 + Limits().place_spacing - 1e-6


def test_places_are_spaced_at_the_fleets_steady_rate_shares_included() -> None:
    """Handed-back work comes back as fast as the fleet serves a location: the bucket's fill of
    its part plus every container's share (at the bucket's rate alone, a backlog would drain at
    half the limit with the shares idle)."""
    from appointment_enricher.budget.wiring import fleet_limits  # noqa: PLC0415

    limits = fleet_limits(5)
    assert limits.interval_seconds / limits.place_spacing == pytest.approx(0.9 * 55 + 45)
    shared = MemoryBudget()
    places = [shared.queue_place("loc", earliest=100.0, limits=limits) for _ in range(round(0.9 * 55 + 45))]
    assert places[-1] - 100.0 == pytest.approx(limits.interval_seconds, rel=0.01)


def test_behind_a_backlog_a_lease_is_sized_to_what_the_threads_asking_may_spend() -> None:
    """Tokens leased for nobody expire unspent: behind a backlog the container knows of, one
    thread alone leases what its work may request in a row (its appointment, plus its related
    entities), not the bucket's whole burst; with no backlog, the whole lease (threads arriving a
    moment later take from it: one write, not one each)."""

    class Sizes(MemoryBudget):
        def __init__(self) -> None:
            super().__init__()
            self.sizes: list[int] = []

        def lease(self, location_id: str, count: int, *, now: float, limits: Limits) -> Lease:
            self.sizes.append(count)
            return super().lease(location_id, count, now=now, limits=limits)

    clocks, shared = Clocks(), Sizes()
    last = []
    for location, per_ask in (("a", 1), ("b", 3), ("c", 9)):
        sized = spender(clocks, shared, lease=5, queue=True, requests_per_ask=per_ask)
        sized.take(location, deadline=100)  # no backlog known: the whole lease
        assert shared.sizes[-1] == 5
        sized.observe(location, {"X-RateLimit-Remaining": "0"})  # the window is full: spares void
        with pytest.raises(BudgetThrottled):  # a place in the queue: the backlog is known
            sized.take(location, deadline=clocks.monotonic() + 0.01)
        sized.take(location, deadline=100)  # waits the short wait, before its place comes
        last.append(shared.sizes[-1])
    assert last == [1, 3, 5]
    unsized = spender(clocks, shared, lease=5, queue=True)
    shared.sizes.clear()
    unsized.take("d", deadline=100)
    assert shared.sizes == [5]


def test_a_batchs_threads_lease_one_at_a_time_and_share_the_lease() -> None:
    """Ten worker threads asking together make two lease requests (7 + 3 of 7), not ten racing
    conditional writes: each one that fails is a billed DynamoDB write."""
    import threading  # noqa: PLC0415
    import time  # noqa: PLC0415

    class Counting(MemoryBudget):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0
            self.inside = 0
            self.most_inside = 0
            self.count_lock = threading.Lock()

        def lease(self, location_id: str, count: int, *, now: float, limits: Limits) -> Lease:
            with self.count_lock:
                self.calls += 1
                self.inside += 1
                self.most_inside = max(self.most_inside, self.inside)
            time.sleep(0.05)  # a conditional write's round trip: the others arrive meanwhile
            try:
                return super().lease(location_id, count, now=now, limits=limits)
            finally:
                with self.count_lock:
                    self.inside -= 1

    budget, clocks = Counting(), Clocks()
    roomy = Limits(max_requests=1000)  # a burst of 69: no lease waits on the bucket here
    pool = Spender(budget, limits=roomy, lease=7, lease_seconds=60, epoch=clocks.epoch)
    start = threading.Barrier(10)

    def worker() -> None:
        start.wait()
        pool.take("loc", deadline=time.monotonic() + 30)

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert (budget.calls, budget.most_inside) == (2, 1)
    assert budget._states["loc"].used == 14  # two leases of seven


class CountingLeases(MemoryBudget):
    def __init__(self) -> None:
        super().__init__()
        self.leases = 0

    def lease(self, location_id: str, count: int, *, now: float, limits: Limits) -> Lease:
        self.leases += 1
        return super().lease(location_id, count, now=now, limits=limits)


def test_a_containers_own_share_is_n_requests_per_location_in_any_interval_without_a_lease() -> None:
    clocks, shared = Clocks(), CountingLeases()
    mine = spender(clocks, shared, share=2)
    mine.take("a", deadline=100)
    mine.take("b", deadline=100)
    clocks.t += 4.0
    mine.take("a", deadline=100)
    assert shared.leases == 0  # two requests in a, one in b: no lease, no write
    mine.take("a", deadline=100)
    assert shared.leases == 1  # the third in the interval leases from the shared bucket
    clocks.t = Limits().interval_seconds - 0.01
    mine.take("a", deadline=100)
    assert shared.leases == 2  # the first request is a hundredth of a second short of leaving
    clocks.t = Limits().interval_seconds + 0.6  # (the lease just taken has expired)
    mine.take("a", deadline=100)
    assert shared.leases == 2  # the first request left the window: one share is free again
    mine.take("a", deadline=100)
    assert shared.leases == 3  # the second (4 s later) is still inside it: a sliding window


def test_an_own_share_request_counts_from_its_answer() -> None:
    """Upstream counts a request when it arrives, between its grant and its answer: the share's
    window runs from the answer (``settle``), so a slow request frees its place later."""
    clocks, shared = Clocks(), CountingLeases()
    mine = spender(clocks, shared, share=1)
    mine.take("a", deadline=100)
    clocks.t += 3.0  # a slow token lookup and connection
    mine.settle()
    clocks.t = Limits().interval_seconds + 1.0
    mine.take("a", deadline=100)
    assert shared.leases == 1  # 11 s after the grant, 8 s after the answer: not free yet
    mine.settle()  # a bucket request: nothing of the share to restamp
    clocks.t = Limits().interval_seconds + 3.0
    mine.take("a", deadline=100)
    assert shared.leases == 1  # one interval after the answer: the share again
    mine.settle()
    mine.settle()  # twice is harmless: the second has nothing to restamp
    clocks.t = 2 * Limits().interval_seconds + 3.0 - 0.01
    mine.take("a", deadline=100)
    assert shared.leases == 2  # restamped at its own answer (13 s), not at the first one's


class NeverGrants(MemoryBudget):
    def lease(self, location_id: str, count: int, *, now: float, limits: Limits) -> Lease:
        return Lease(0, wait=60.0)


@pytest.mark.parametrize("seed", range(5))
def test_a_share_never_exceeds_itself_in_upstreams_window_however_late_its_requests_arrive(
    seed: int,
) -> None:
    """A container spending only its share, its requests arriving 0-3 s after their grant (and
    answered then): no window of the interval at upstream ever sees more than the share. Stamped
    at the grant, a burst granted as the previous one leaves the window meets the late arrivals."""
    import random  # noqa: PLC0415

    rng, clocks, share = random.Random(seed), Clocks(), 10
    mine = spender(clocks, NeverGrants(), share=share, max_wait=0.0)
    arrivals: list[float] = []
    in_flight: list[float] = []  # answer times, one request at a time per simulated thread
    while clocks.t < 120:
        for answer in [a for a in in_flight if a <= clocks.t]:
            in_flight.remove(answer)
            mine.settle()  # (one thread here: its last grant is the one answered)
        if not in_flight:
            try:
                mine.take("loc", deadline=1e9)
            except BudgetThrottled:
                pass
            else:
                lag = rng.choice([0.0, 0.0, rng.uniform(0.0, 3.0)])
                arrivals.append(clocks.t + lag)
                in_flight.append(clocks.t + lag)
        clocks.t = round(clocks.t + 0.01, 2)
    arrivals.sort()
    window: deque[float] = deque()
    for t in arrivals:
        window.append(t)
        while t - window[0] >= Limits().interval_seconds - 1e-9:
            window.popleft()
        assert len(window) <= share
    assert len(arrivals) >= share * 6  # and the share is spent: about once per interval and lag


def test_the_fleet_keeps_every_containers_share_out_of_the_bucket() -> None:
    from appointment_enricher.budget.wiring import (  # noqa: PLC0415
        MAX_SHARE,
        SHARE_RESERVE,
        fleet_limits,
        share_per_container,
    )

    # at most SHARE_RESERVE in all, none below MIN_SHARE each (a small share goes unspent), none
    # above MAX_SHARE (a large share's bursts meet upstream's window)
    assert SHARE_RESERVE // 2 > MAX_SHARE
    assert [share_per_container(n) for n in (None, 1, 2, 5, 7, 12, 13, 20)] == [0, 10, 10, 9, 6, 4, 0, 0]
    for containers in (1, 2, 5, 7, 12, 13, 20):
        limits = fleet_limits(containers)
        assert limits.reserved == containers * share_per_container(containers) <= SHARE_RESERVE
        assert limits.shared + limits.reserved == limits.max_requests
        assert limits.burst >= 4  # a lease write per four or more requests beyond the shares
    unknown = fleet_limits(None)
    assert (unknown.reserved, unknown.shared, unknown.burst) == (0, 100, 5)


@pytest.mark.parametrize("containers", [1, 5, 7, 20, 61])
def test_every_container_at_once_never_exceeds_the_limit_in_any_window(containers: int) -> None:
    """Greedy containers, each taking a token every 10 ms from the fleet's bucket and their own
    shares: no window of the interval ever sees more than the documented limit."""
    from appointment_enricher.budget.wiring import fleet_limits, share_per_container  # noqa: PLC0415

    clocks, shared = Clocks(), MemoryBudget()
    limits = fleet_limits(containers)
    fleet = [
        Spender(
            shared,
            limits=limits,
            lease=limits.burst,
            max_wait=0.0,
            share=share_per_container(containers),
            epoch=clocks.epoch,
            monotonic=clocks.monotonic,
        )
        for _ in range(containers)
    ]
    spends: list[float] = []
    while clocks.t < 60:
        for container in fleet:
            try:
                container.take("loc", deadline=1e9)
            except BudgetThrottled:
                continue
            spends.append(clocks.t)
        clocks.t = round(clocks.t + 0.01, 2)
    window: deque[float] = deque()
    for t in spends:
        window.append(t)
        while t - window[0] >= limits.interval_seconds - 1e-9:
            window.popleft()
        assert len(window) <= limits.max_requests
    # and the fleet still gets what it may: the bucket's fill of its part, plus every share
    per_interval = limits.fill * limits.shared + limits.reserved
    assert len(spends) / 6 >= 0.98 * per_interval


def test_upstream_saying_the_window_or_the_day_is_spent_closes_the_share() -> None:
    clocks, shared = Clocks(), CountingLeases()
    mine = spender(clocks, shared, share=3)
    mine.observe("a", {"X-RateLimit-Remaining": "0"})
    mine.take("a", deadline=100)
    assert shared.leases >= 1  # closed for an interval: the shared bucket decides (and waits)
    mine.observe("b", {"X-RateLimit-Daily-Remaining": "0"})
    clocks.t += 5 * Limits().interval_seconds
    with pytest.raises(DailyBudgetExhausted):
        mine.take("b", deadline=100)  # closed until the day resets, however long that is
