"""Geo-replication over a simulated WAN (issue 5): three regions of three nodes each (geolib),
every cross-region link through tcpproxy routes with a delay (20-40 ms one way) and a bandwidth
bound, so links can be slowed, cut and counted.

The regions start once for the module; before each test every link is healed and reset to the
baseline and every node a test killed runs again. Each test works in its own bucket.

The tests hold whether a region keeps every object's blocks (full replication, today's ternd)
or only the metadata with the blocks read remotely (the placement design): reads compare bytes
and ETags, whoever serves them. Test 5 pins its bucket to every region, so there the blocks
must cross every link either way.
"""

import json
import random
import threading
import time

import pytest
from botocore.exceptions import BotoCoreError, ClientError

import clusterlib
import geolib
import ternlib
from geolib import ABSENT, REGIONS, md5, read
from ternlib import MIB, wait_until

A, B, C = REGIONS  # us-east, eu-west, ap-southeast
CONVERGE_S = 60.0
CUT_S = 30.0


@pytest.fixture(scope="module", autouse=True)
def _needs_geo_flags():
    text = clusterlib.ternd_help()
    missing = [f for f in ("--topology", "--region", "--peers", "--election-timeout-ms")
               if f not in text]
    assert not missing, f"ternd --help lacks {missing}"


@pytest.fixture(scope="module")
def geo(tmp_path_factory):
    g = geolib.Geo(tmp_path_factory.mktemp("geo"))
    try:
        g.start()
    except BaseException:
        print(g.report())
        g.close()
        raise
    yield g
    errors = g.close()
    assert not errors, "\n".join(errors)


@pytest.fixture(autouse=True)
def wan(geo, request):
    geo.restore()
    failed_before = request.session.testsfailed
    yield geo
    died = geo.unexpected_exits()
    if died or request.session.testsfailed > failed_before:
        print(geo.report(25))  # captured: pytest shows it with the failure
    assert not died, (f"nodes died during the test (region, node, exit code): {died} (exit 0 "
                      f"is a SIGTERM from outside the harness, such as a pkill of ternd)")


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------

def listing(geo, region, bucket, prefix=""):
    """{key: etag} of the bucket in region (a random node of it); None on a failure."""
    try:
        client = geo.client(region, read_timeout_s=30.0)
        out = {}
        token = None
        for _ in range(1000):
            kw = {"Bucket": bucket, "MaxKeys": 1000, "Prefix": prefix}
            if token:
                kw["ContinuationToken"] = token
            r = client.list_objects_v2(**kw)
            out.update({o["Key"]: o["ETag"].strip('"') for o in r.get("Contents", [])})
            if not r["IsTruncated"]:
                return out
            token = r["NextContinuationToken"]
        raise AssertionError("listing did not terminate")
    except (ClientError, BotoCoreError, OSError):
        return None


def wait_reads(geo, bucket, expected, regions, per_node=False, timeout_s=CONVERGE_S, what=""):
    """Waits until reads in every region of regions (every node of them with per_node) give
    expected[key]: the bytes (with their MD5 as ETag) or ABSENT."""
    pending = set()
    for r in regions:
        nodes = list(geo.groups[r].nodes) if per_node else [None]
        pending |= {(r, n, k) for n in nodes for k in expected}

    def done():
        for (r, n, k) in sorted(pending, key=str):
            got = read(geo.client(r, n), bucket, k)
            want = expected[k]
            if got is None:
                continue  # a timeout or an election: ask again
            if (want is ABSENT and got == ABSENT) or (
                    want is not ABSENT and got != ABSENT and got == (want, md5(want))):
                pending.discard((r, n, k))
        return not pending
    try:
        wait_until(done, timeout_s, interval_s=0.1, what=what)
    except TimeoutError as e:
        left = sorted(pending, key=str)
        raise AssertionError(f"{e}: {len(left)} (region, node, key) still differ, e.g. "
                             f"{left[:6]}") from None


def body(key, region, seq, size, rng):
    head = f"{key}|{region}|{seq}|".encode()
    return head + rng.randbytes(max(0, size - len(head)))


def run_threads(targets, join_s):
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    deadline = time.monotonic() + join_s
    for t in threads:
        t.join(timeout=max(0.1, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), f"writer threads still running after {join_s}s"


def wait_stable(fn, timeout_s, settle_s=0.6, what="a value to settle"):
    """Polls fn() until it returned the same value (not None) for settle_s; returns it."""
    last = {"value": object(), "since": 0.0}

    def settled():
        v = fn()
        now = time.monotonic()
        if v is None or v != last["value"]:
            last["value"], last["since"] = v, now
            return None
        return (v,) if now - last["since"] >= settle_s else None
    return wait_until(settled, timeout_s, interval_s=0.1, what=what)[0]


# ----------------------------------------------------------------------------
# 1. a write reaches every region, and so does its delete
# ----------------------------------------------------------------------------

def test_write_reads_everywhere_and_delete_propagates(geo):
    bucket = geo.new_bucket(A)
    big = ternlib.random_bytes(3 * MIB + 17, seed=11)  # four blocks
    small = b"written in us-east"
    client = geo.client(A)
    client.put_object(Bucket=bucket, Key="big", Body=big)
    client.put_object(Bucket=bucket, Key="dir/small", Body=small)
    # Every node of both other regions serves the same bytes and ETag.
    wait_reads(geo, bucket, {"big": big, "dir/small": small}, (B, C), per_node=True,
               what="us-east's objects on every node of eu-west and ap-southeast")
    for r in (B, C):
        assert listing(geo, r, bucket) == {"big": md5(big), "dir/small": md5(small)}, r

    client.delete_object(Bucket=bucket, Key="big")
    wait_reads(geo, bucket, {"big": ABSENT}, (B, C), per_node=True,
               what="the delete of big on every node of eu-west and ap-southeast")
    for r in REGIONS:
        assert listing(geo, r, bucket) == {"dir/small": md5(small)}, r
        assert read(geo.client(r), bucket, "dir/small") == (small, md5(small)), r


# ----------------------------------------------------------------------------
# 2. concurrent writes of one key converge on one winner
# ----------------------------------------------------------------------------

def test_concurrent_writes_of_a_key_converge(geo):
    bucket = geo.new_bucket(A)
    writes = geolib.Writes()
    keys = [f"race/{i}" for i in range(6)]  # 0-2 raced by two regions, 3-5 by all three
    nodes = {r: geo.groups[r].any_node() for r in REGIONS}

    for rnd in range(2):
        barrier = threading.Barrier(len(REGIONS), timeout=30)

        def writer(region, rnd=rnd, barrier=barrier):
            rng = random.Random(f"{region}{rnd}")
            barrier.wait()
            for i, k in enumerate(keys):
                if region == C and i < 3:
                    continue
                writes.put(region, nodes[region], bucket, k,
                           body(k, region, rnd, rng.choice((50, 4000, 70_000)), rng))
        run_threads([lambda r=r: writer(r) for r in REGIONS], 60)
    failed = [w for w in writes.all if w.status != "ok"]
    assert not failed, f"writes failed with every link up: {failed}"

    def converged():
        views = {}
        for k in keys:
            vals = [read(geo.client(r), bucket, k) for r in REGIONS]
            if any(v is None or v == ABSENT for v in vals) or len(set(vals)) != 1:
                return None
            views[k] = vals[0]
        return views
    # Each region's copy only moves forward in version order and already holds its own writes,
    # so once the three agree they hold the newest write: the agreement is final.
    views = wait_until(converged, CONVERGE_S, interval_s=0.1,
                       what="every region to hold the same bytes and ETag for every raced key")
    complaints = []
    for k, (data, etag) in views.items():
        assert etag == md5(data), (k, etag)
        complaints += geolib.lww_complaints(writes, k, etag)
        # Asked again, on every node: nothing moves any more.
        for r in REGIONS:
            for n in geo.groups[r].nodes:
                got = read(geo.client(r, n), bucket, k)
                assert got == (data, etag), f"{k} on {r}/node{n} changed after converging: {got}"
    assert not complaints, "\n".join(complaints)
    winners = {k: next(w.region for w in writes.of_key(k) if w.value == etag)
               for k, (_, etag) in views.items()}
    print(f"winners: {winners}")


# ----------------------------------------------------------------------------
# 3. a region cut off for 30 s catches up, with last-writer-wins decided consistently
# ----------------------------------------------------------------------------

def test_region_cut_off_catches_up(geo):
    bucket = geo.new_bucket(A)
    writes = geolib.Writes()
    rngs = {r: random.Random(f"cut-{r}") for r in REGIONS}
    for r in REGIONS:
        writes.put(r, geo.groups[r].any_node(), bucket, f"before/{r}",
                   body(f"before/{r}", r, 0, 1000, rngs[r]))
    assert all(w.status == "ok" for w in writes.all), writes.all
    wait_reads(geo, bucket, {w.key: w.body for w in writes.all}, REGIONS,
               what="the writes made before the cut, everywhere")

    geo.isolate(C)
    cut_at = time.time()
    stop = threading.Event()

    def writer(region):
        rng = rngs[region]
        for i in range(400):
            if stop.is_set():
                return
            key = f"shared/{i % 4}" if i % 3 == 0 else f"{region}/{i:03d}"
            size = rng.choice((100, 3000, 40_000, 200_000))
            writes.put(region, geo.groups[region].any_node(rng), bucket, key,
                       body(key, region, i, size, rng))
            stop.wait(0.4)  # pacing, not synchronization: about two writes a second

    threads = [threading.Thread(target=writer, args=(r,), daemon=True) for r in REGIONS]
    for t in threads:
        t.start()

    def partition_holds():
        """Nothing written during the cut has crossed into or out of the cut-off region."""
        in_c = listing(geo, C, bucket)
        in_a = listing(geo, A, bucket)
        if in_c is None or in_a is None:
            return
        crossed = [k for k in in_c if k.startswith((f"{A}/", f"{B}/"))]
        crossed += [k for k in in_a if k.startswith(f"{C}/")]
        assert not crossed, f"writes crossed a cut link: {crossed[:5]}"

    # Hold the cut for CUT_S, checking all along that it holds.
    deadline = time.monotonic() + CUT_S
    for _ in range(int(CUT_S) + 5):
        if time.monotonic() >= deadline:
            break
        partition_holds()
        stop.wait(min(2.0, max(0.0, deadline - time.monotonic())))
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "writer threads did not stop"

    # Two keys whose last writer is known by wall clock, one on each side of the cut: the
    # later write must win everywhere, whichever of them arrives later.
    def ordered(key, first, second):
        w1 = writes.put(first, geo.groups[first].any_node(), bucket, key,
                        body(key, first, 1, 500, rngs[first]))
        # Versions are hybrid clocks with millisecond physical time: start clearly after.
        wait_until(lambda: time.time() > w1.end + 0.005, 1, interval_s=0.001)
        w2 = writes.put(second, geo.groups[second].any_node(), bucket, key,
                        body(key, second, 2, 500, rngs[second]))
        assert w1.status == w2.status == "ok", (w1, w2)
        return w2
    lww = {"lww/c-last": ordered("lww/c-last", A, C), "lww/b-last": ordered("lww/b-last", C, B)}
    partition_holds()
    acked_in_cut = [w for w in writes.acked() if w.start >= cut_at]
    by_region = {r: sum(1 for w in acked_in_cut if w.region == r) for r in REGIONS}
    assert all(n >= 10 for n in by_region.values()), \
        f"too few writes acknowledged during the cut: {by_region}; {writes.summary()}"

    healed_at = time.monotonic()
    geo.heal_all()

    single = {}  # key -> its only write (every region keys its own writes)
    for k in writes.keys():
        ws = writes.of_key(k)
        if not k.startswith(("shared/", "lww/")):
            assert len(ws) == 1, ws
            single[k] = ws[0]

    def converged():
        ls = [listing(geo, r, bucket) for r in REGIONS]
        if any(x is None for x in ls) or not ls[0] == ls[1] == ls[2]:
            return None
        for k, w in single.items():
            if w.status == "ok" and ls[0].get(k) != w.value:
                return None
        return ls[0]
    try:
        final = wait_until(converged, CONVERGE_S, interval_s=0.2,
                           what="every region to list the same objects, every acked write in")
    except TimeoutError as e:
        ls = {r: listing(geo, r, bucket) for r in REGIONS}
        missing = {r: [k for k, w in single.items() if w.status == "ok" and
                       (ls[r] or {}).get(k) != w.value][:5] for r in REGIONS}
        raise AssertionError(f"{e}; acked writes missing: {missing}; {writes.summary()}") from None
    caught_up_s = time.monotonic() - healed_at

    complaints = []
    for k, w in single.items():
        got = final.get(k)
        if w.status == "ok" and got != w.value:
            complaints.append(f"acknowledged {w} lists as {got}")
        elif w.status != "ok" and got not in (None, w.value):
            complaints.append(f"{w} lists as {got}")
    for k in final:
        if k.startswith(("shared/", "lww/")):
            complaints += geolib.lww_complaints(writes, k, final[k])
    for k, w2 in lww.items():
        if final.get(k) != w2.value:
            complaints.append(f"{k}: the later write {w2} lost (listed {final.get(k)})")
    assert not complaints, "\n".join(complaints[:20])
    # Listed metadata is not enough: read the bytes where they were not written.
    by_value = {w.value: w for w in writes.all}
    for k, etag in sorted(final.items()):
        origin = by_value[etag].region
        for r in REGIONS:
            if r != origin:
                got = read(geo.client(r), bucket, k)
                assert got == (by_value[etag].body, etag), f"{k} in {r}: {got and got[1]}"
    print(f"{len(acked_in_cut)} writes acked during the cut {by_region}; "
          f"caught up {caught_up_s:.1f}s after the heal")


# ----------------------------------------------------------------------------
# 4. SIGKILL of a region's leader while it ships loses nothing acknowledged
# ----------------------------------------------------------------------------

def test_leader_killed_while_shipping_loses_nothing(geo):
    bucket = geo.new_bucket(A)
    # Every region must hold every block (placement would otherwise keep them in us-east and
    # ship only metadata, which outruns the writes), so that shipping carries the bytes...
    geo.set_policy(A, bucket, {"min_regions": 3})
    g = geo.groups[A]
    leader = g.leader_node()
    # ...and slow us-east's outgoing links so that shipping lags behind the writes.
    for dst in (B, C):
        geo.set_bandwidth(A, dst, 1 * MIB)
    writes = geolib.Writes()
    size = 256 * 1024
    done = threading.Event()

    def writer(t):
        rng = random.Random(f"kill-{t}")
        for i in range(400):
            if done.is_set():
                return
            node = rng.choice(g.live())
            key = f"kill/{t}/{i:03d}"
            w = writes.put(A, node, bucket, key, body(key, A, i, size, rng), read_timeout_s=8.0)
            # Pacing (about 8 PUTs a second per thread, more than shipping drains), and a
            # longer pause after a failure.
            done.wait(0.1 if w.status == "ok" else 0.3)

    threads = [threading.Thread(target=writer, args=(t,), daemon=True) for t in range(2)]
    for t in threads:
        t.start()

    def in_b():
        ls = listing(geo, B, bucket)
        return len(ls) if ls is not None else 0
    try:
        # Kill once shipping is under way (eu-west holds some) and 10 writes were acked.
        wait_until(lambda: len(writes.acked()) >= 10 and in_b() >= 1, 60, interval_s=0.1,
                   what="10 acked writes and shipping under way")
        acked_at_kill, shipped_at_kill = len(writes.acked()), in_b()
        killed_at = time.time()
        leader.kill()
        assert shipped_at_kill < acked_at_kill, \
            f"shipping was not behind at the kill ({shipped_at_kill} of {acked_at_kill} in {B})"
        survivors = [i for i in g.nodes if i != leader.id]
        new_leader, _ = g.leader(30, among=survivors)
        # The survivors keep taking writes.
        wait_until(lambda: sum(1 for w in writes.acked() if w.start > killed_at) >= 10, 60,
                   interval_s=0.1, what="10 writes acked by the survivors after the kill")
    finally:
        done.set()
        for t in threads:
            t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), f"writers stuck: {writes.summary()}"
    acked = writes.acked()
    after = [w for w in acked if w.start > killed_at]

    for dst in (B, C):
        geo.set_bandwidth(A, dst, geolib.BANDWIDTH_BPS)
    want = {w.key: w.value for w in acked}

    def converged():
        ls = [listing(geo, r, bucket) for r in REGIONS]
        if any(x is None for x in ls) or not ls[0] == ls[1] == ls[2]:
            return None
        return ls[0] if all(ls[0].get(k) == v for k, v in want.items()) else None
    try:
        final = wait_until(converged, CONVERGE_S, interval_s=0.2,
                           what="every acknowledged PUT listed in every region")
    except TimeoutError as e:
        ls = {r: listing(geo, r, bucket) or {} for r in REGIONS}
        missing = {r: sorted(k for k, v in want.items() if ls[r].get(k) != v)[:5]
                   for r in REGIONS}
        raise AssertionError(f"{e}; missing: {missing}; killed node {leader.id}, new leader "
                             f"{new_leader}; {writes.summary()}") from None
    # Whatever else is listed was written with an unknown outcome (in flight at the kill).
    extra = {k: v for k, v in final.items() if k not in want}
    unknown = {w.key: w.value for w in writes.all if w.status == "unknown"}
    assert all(unknown.get(k) == v for k, v in extra.items()), (extra, unknown)
    for w in acked:
        for r in (B, C):
            got = read(geo.client(r), bucket, w.key)
            assert got == (w.body, w.value), f"{w} in {r}: {got and got[1]}"
    print(f"killed node {leader.id} with {acked_at_kill} acked, {shipped_at_kill} in eu-west; "
          f"new leader {new_leader}; {len(acked)} acked, {len(after)} after the kill; "
          f"{writes.summary()}")


# ----------------------------------------------------------------------------
# 5. egress accounting agrees with the bytes on the wire
# ----------------------------------------------------------------------------

def test_egress_counters_agree_with_the_wire(geo):
    bucket = geo.new_bucket(A)
    # Pinned to every region: the blocks must cross each link, whatever placement decides.
    policy = {"min_regions": 3, "pinned_regions": list(REGIONS)}
    geo.set_policy(A, bucket, policy)
    wait_until(lambda: all((geo.get_policy(r, bucket) or {}).get("min_regions") == 3
                           for r in (B, C)), 30, interval_s=0.1,
               what="the bucket's policy in eu-west and ap-southeast")
    others = (B, C)

    def egress():
        return tuple(geo.egress_bytes(A, dst) for dst in others)
    e0 = wait_stable(egress, 30, what="us-east's replication egress to settle")
    p0 = tuple(geo.wan_bytes(A, dst) for dst in others)

    rng = random.Random("egress")
    sizes = [256 * 1024 + 1, MIB + 3, 3 * MIB + 5, 100_000, 700_001]
    objects = {f"e/{i}": rng.randbytes(n) for i, n in enumerate(sizes)}
    for k, data in objects.items():
        geo.client(A).put_object(Bucket=bucket, Key=k, Body=data)
    total = sum(sizes)
    want = {k: md5(v) for k, v in objects.items()}
    wait_until(lambda: all(listing(geo, r, bucket) == want for r in others), CONVERGE_S,
               interval_s=0.2, what="the objects listed in eu-west and ap-southeast")
    e1 = wait_stable(lambda: egress() if all(
        x - y >= total for x, y in zip(egress(), e0)) else None, CONVERGE_S,
        what="us-east's replication egress to cover the objects and settle")
    p1 = tuple(geo.wan_bytes(A, dst) for dst in others)
    wait_reads(geo, bucket, objects, others, what="the objects' bytes in the other regions")

    for dst, a0, a1, b0, b1 in zip(others, e0, e1, p0, p1):
        counted, wire = a1 - a0, b1 - b0
        msg = (f"{A}->{dst}: egress counted {counted} B, the proxy carried {wire} B, "
               f"objects {total} B")
        assert counted >= total, msg
        assert counted <= wire, msg
        assert wire <= counted * 1.10 + 64 * 1024, msg
        print(msg)


# ----------------------------------------------------------------------------
# 6. the region leader's engine sees the reads its followers served
# ----------------------------------------------------------------------------

def test_leader_engine_sees_reads_served_by_followers(geo):
    bucket = geo.new_bucket(A)
    data = ternlib.random_bytes(MIB // 2, seed=23)
    geo.client(A).put_object(Bucket=bucket, Key="watched", Body=data)
    leader = geo.groups[C].leader_node()
    followers = [n for n in geo.groups[C].live() if n.id != leader.id]
    assert followers, "ap-southeast has no follower"
    wait_reads(geo, bucket, {"watched": data}, (C,), what="the object in ap-southeast")
    for n in followers:
        for _ in range(3):
            got = n.client(10.0).get_object(Bucket=bucket, Key="watched")["Body"].read()
            assert got == data

    def c_demand():
        r = leader.signer().request("GET", "/_tern/placement/explain",
                                    params=[("bucket", bucket), ("key", "watched")],
                                    timeout_s=5.0)
        if r.status != 200:
            return None
        regions = {x["name"]: x for x in json.loads(r.body)["regions"]}
        return regions[C]["reads_per_day"] > 0
    # Only followers served those reads: the leader knows of them from their journals.
    ternlib.wait_until(c_demand, 30, interval_s=0.2,
                       what="ap-southeast's leader engine to count its followers' reads")
