"""Unit tests of linearizability.py (the register checker test_cluster.py relies on): known
linearizable and known non-linearizable histories, so the checker is shown able to fail."""

import random

import pytest

from linearizability import Op, SearchLimit, check, check_keys


def W(v, s, e, status="ok"):
    return Op("write", v, s, e, status)


def R(v, s, e, status="ok"):
    return Op("read", v, s, e, status)


LINEARIZABLE = {
    "empty": [],
    "read initial": [R(None, 0, 1)],
    "sequential": [W("a", 0, 1), R("a", 2, 3), W("b", 4, 5), R("b", 6, 7)],
    "read overlaps write, sees old": [W("a", 0, 1), W("b", 2, 5), R("a", 3, 4)],
    "read overlaps write, sees new": [W("a", 0, 1), W("b", 2, 5), R("b", 3, 4)],
    "concurrent writes, either order": [W("a", 0, 5), W("b", 1, 6), R("a", 7, 8)],
    "concurrent writes, other order": [W("a", 0, 5), W("b", 1, 6), R("b", 7, 8)],
    "new then old impossible? no: reads overlap each other and the write":
        [W("a", 0, 1), W("b", 2, 10), R("b", 3, 5), R("b", 6, 8)],
    "ties count as overlapping": [W("a", 0, 1), R("a", 1, 2)],
    "unknown write applied late": [W("a", 0, 1), W("b", 2, 3, "unknown"), R("a", 4, 5),
                                   R("b", 6, 7)],
    "unknown write never applied": [W("a", 0, 1), W("b", 2, 3, "unknown"), R("a", 10, 11)],
    "failed write ignored": [W("a", 0, 1), W("b", 2, 3, "fail"), R("a", 4, 5)],
    "failed read ignored": [W("a", 0, 1), R("zzz", 2, 3, "fail")],
    "backtracking needed": [W("a", 0, 10), W("b", 0, 10), R("a", 1, 2), R("b", 3, 4),
                            R("b", 11, 12)],
}

NOT_LINEARIZABLE = {
    "read of a value never written": [W("a", 0, 1), R("x", 2, 3)],
    "stale read after acknowledged write": [W("a", 0, 1), W("b", 2, 3), R("a", 4, 5)],
    "read before the write started": [R("a", 0, 1), W("a", 2, 3)],
    "lost write reads initial": [W("a", 0, 1), R(None, 2, 3)],
    "new then old (non-monotonic reads)": [W("a", 0, 1), W("b", 2, 10), R("b", 3, 4),
                                           R("a", 5, 6)],
    "two readers disagree on order": [W("a", 0, 10), W("b", 0, 10), R("a", 11, 12),
                                      R("b", 13, 14), R("a", 15, 16)],
    "unknown write cannot undo itself": [W("a", 0, 1), W("b", 2, 3, "unknown"), R("b", 4, 5),
                                         R("a", 6, 7)],
    "failed write observed is still wrong if it was the only way": [W("a", 0, 1),
                                                                    W("b", 2, 3, "fail"),
                                                                    R("b", 4, 5)],
}


@pytest.mark.parametrize("name", sorted(LINEARIZABLE))
def test_linearizable_histories_pass(name):
    ok, why = check(LINEARIZABLE[name])
    assert ok, f"{name}: {why}"


@pytest.mark.parametrize("name", sorted(NOT_LINEARIZABLE))
def test_non_linearizable_histories_fail(name):
    ok, why = check(NOT_LINEARIZABLE[name])
    assert not ok, f"{name} was accepted"
    assert "not linearizable" in why


def test_check_keys_reports_only_bad_keys():
    bad = check_keys({"good": LINEARIZABLE["sequential"],
                      "bad": NOT_LINEARIZABLE["stale read after acknowledged write"]})
    assert [k for k, _ in bad] == ["bad"]


def _simulated_register(seed, ops_count=200, clients=6, bad_read_at=None):
    """A history from a simulated atomic register: each op takes effect at one instant inside
    its interval. bad_read_at=i makes read number i return a value never written."""
    rng = random.Random(seed)
    history = []
    value = None
    previous = None
    t = 0.0
    ongoing = []
    reads = 0
    for i in range(ops_count):
        t += rng.random()
        start = t
        effect = start + rng.random() * 2
        end = effect + rng.random() * 2
        ongoing.append((effect, start, end, i))
    for effect, start, end, i in sorted(ongoing):
        if rng.random() < 0.5:
            previous, value = value, f"v{i}"
            status = "unknown" if rng.random() < 0.1 else "ok"
            history.append(W(value, start, end, status))
        else:
            seen = value
            if bad_read_at is not None and reads == bad_read_at:
                seen = ("never written", previous)
            reads += 1
            history.append(R(seen, start, end))
    return history


@pytest.mark.parametrize("seed", range(20))
def test_random_atomic_histories_pass(seed):
    ok, why = check(_simulated_register(seed))
    assert ok, f"seed {seed}: {why}"


@pytest.mark.parametrize("seed", range(20))
def test_random_histories_with_one_bad_read_fail(seed):
    ok, _ = check(_simulated_register(seed, bad_read_at=10))
    assert not ok, f"seed {seed}: a read of a value never written was accepted"


def test_search_limit_is_inconclusive_not_a_pass():
    # Concurrent unknown writes, each read once, then the first value again (impossible: it
    # was overwritten): the search must try many orders before giving up.
    history = [W(f"w{i}", 0, 1, "unknown") for i in range(12)]
    history += [R(f"w{i}", 2 + i, 2.5 + i) for i in range(12)] + [R("w0", 20, 21)]
    with pytest.raises(SearchLimit):
        check(history, max_steps=50)
    ok, _ = check(history)
    assert not ok


def test_unobserved_unknown_writes_do_not_blow_up():
    history = [W(f"w{i}", 0, 1, "unknown") for i in range(200)]
    history += [W("a", 2, 3), R("a", 4, 5)]
    assert check(history, max_steps=1000) == (True, None)


def test_long_history_is_fast():
    ok, why = check(_simulated_register(7, ops_count=3000, clients=8))
    assert ok, why
