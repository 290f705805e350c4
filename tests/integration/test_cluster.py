"""A 3-node region group under faults: election, linearizable reads, leader crash under load
(with a linearizability check of the recorded history), pause, partition, no election storm,
membership changes under load (and the answers to removing the leader), whole-cluster restart.
The harness is clusterlib.py; the history checker linearizability.py (its own tests:
test_linearizability.py).

Knobs: TERN_CLUSTER_SOAK=1 runs the load phases ~6x longer; TERN_CLUSTER_SEED=N replays a
run's random choices (the seed is printed); TERN_CLUSTER_SYNC=1 turns fdatasync on;
TERN_CLUSTER_ELECTION_MS / TERN_CLUSTER_HEARTBEAT_MS change the Raft timing (default 1000/100);
TERN_CLUSTER_SNAPSHOT_ENTRIES sets --snapshot-entries of the load tests (default 400).
"""

import os
import random
import threading
import time

from botocore.exceptions import BotoCoreError, ClientError

import pytest

import clusterlib
import linearizability
import ternlib
from clusterlib import History, Workload, value_of
from ternlib import wait_until

SOAK = os.environ.get("TERN_CLUSTER_SOAK", "0") == "1"
SEED = int(os.environ.get("TERN_CLUSTER_SEED", str(random.randrange(1 << 30))))
ELECTION_S = clusterlib.ELECTION_TIMEOUT_MS / 1000.0
# How long a failover may take: detection (an election timeout, randomized up to 2x) plus
# pre-vote and vote rounds on a loaded machine.
FAILOVER_S = 10 * ELECTION_S + 5
# Load tests snapshot and compact often, so restarted and new nodes also catch up by
# InstallSnapshot, and snapshots are taken while nodes crash.
SNAPSHOT_ARGS = ("--snapshot-entries", os.environ.get("TERN_CLUSTER_SNAPSHOT_ENTRIES", "400"))


@pytest.fixture(scope="module", autouse=True)
def _needs_cluster_flags():
    text = clusterlib.ternd_help()
    missing = [f for f in ("--peers", "--peer-listen", "--peer-ca", "--join",
                           "--election-timeout-ms", "--heartbeat-ms") if f not in text]
    assert not missing, f"ternd --help lacks {missing}: the region group flags are not built in"


@pytest.fixture
def make_cluster(tmp_path):
    clusters = []

    def make(**kw):
        c = clusterlib.Cluster(tmp_path / f"cluster{len(clusters)}", **kw)
        clusters.append(c)
        return c

    print(f"TERN_CLUSTER_SEED={SEED}")
    yield make
    errors = []
    for c in clusters:
        errors += c.close()
        # Captured output: pytest shows it only when the test fails.
        print(c.report())
    assert not errors, "\n".join(errors)


def put(node, bucket, key, data, timeout_s=10.0):
    return node.client(timeout_s).put_object(Bucket=bucket, Key=key, Body=data)


def get(node, bucket, key, timeout_s=10.0):
    return node.client(timeout_s).get_object(Bucket=bucket, Key=key)["Body"].read()


def put_retrying(node, bucket, key, data, deadline_s=20.0):
    """PUT until a 200, retrying 503s and connection errors (the same body: an idempotent
    overwrite) until deadline_s; returns the number of attempts."""
    deadline = time.monotonic() + deadline_s
    last = None
    for attempt in range(1, 1000):
        try:
            put(node, bucket, key, data)
            return attempt
        except (BotoCoreError, ClientError, OSError) as e:
            if isinstance(e, ClientError) and 400 <= (ternlib.http_status(e) or 0) < 500:
                raise
            last = e
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    raise AssertionError(f"PUT {key} via node {node.id} kept failing for {deadline_s}s: {last!r}")


def create_bucket(node, name=None):
    name = name or ternlib.unique_name("c")
    node.client().create_bucket(Bucket=name)
    return name


def verify_history(cluster, history, bucket, nodes, sample_gets=100, seed=SEED):
    """On every node in nodes: the listing shows every acknowledged single-write key with its
    value, a sample of GETs (all shared keys plus sample_gets others) returns bytes that hash to
    an allowed value, and the whole history (with these final reads) is linearizable per key."""
    errors = []
    rng = random.Random(seed)
    for node in nodes:
        listed = clusterlib.final_reads(history, node, bucket)
        errors += clusterlib.check_acked_present(history, listed, node.id)
        keys = sorted(history.by_key)
        sample = [k for k in keys if k.startswith("shared/")]
        sample += rng.sample(keys, min(sample_gets, len(keys)))
        start = time.monotonic()
        got = {}
        for key in sample:
            try:
                got[key] = value_of(get(node, bucket, key, timeout_s=30.0))
            except ClientError as e:
                if ternlib.error_code(e) != "NoSuchKey":
                    raise
                got[key] = None
        end = time.monotonic()
        for key, value in got.items():
            history.add(key, linearizability.Op("read", value, start, end, "ok",
                                                info=f"final GET on node{node.id}"))
    bad = linearizability.check_keys(history.by_key)
    for key, why in bad[:5]:
        errors.append(f"key {key}: {why}")
    if len(bad) > 5:
        errors.append(f"... and {len(bad) - 5} more non-linearizable keys")
    return errors


# ----------------------------------------------------------------------------
# 1. basic
# ----------------------------------------------------------------------------

def test_basic_election_and_linearizable_reads(make_cluster):
    c = make_cluster().start()
    lid, term = c.leader()
    statuses = c.statuses()
    assert sorted(statuses) == [1, 2, 3]
    for i, s in statuses.items():
        assert s["node_id"] == i and s["region"] == clusterlib.REGION_NAME, s
        assert s["role"] == ("leader" if i == lid else "follower"), s
        assert s["failed"] is False, s
    members = {m["id"]: m for m in statuses[lid]["members"]}
    assert sorted(members) == [1, 2, 3], statuses[lid]
    assert all(m["role"] == "voter" for m in members.values()), members
    assert statuses[lid]["leader_s3"] == c.node(lid).hostport, statuses[lid]

    # Metrics agree with the status: one leader, one term.
    leaders = 0
    for n in c.live():
        m = n.metrics()
        leaders += ternlib.metric(m, "tern_raft_leader")
        assert ternlib.metric(m, "tern_raft_term") == term, (n.id, term)
    assert leaders == 1, f"tern_raft_leader sums to {leaders}"

    f1, f2 = [c.node(i) for i in c.member_ids if i != lid]
    everyone = [c.node(i) for i in c.member_ids]

    # A bucket made on one follower is usable at once through the other.
    bucket = create_bucket(f1)
    for n in everyone:
        n.client().head_bucket(Bucket=bucket)
    data = ternlib.random_bytes(3000, seed=SEED)
    put(f2, bucket, "first", data)
    for n in everyone:
        assert get(n, bucket, "first") == data, f"node {n.id} does not see 'first' right after the 200"

    # Read-your-write from every node right after each acknowledgement, writes through each node.
    rng = random.Random(SEED)
    written = {}
    for i in range(15):
        writer = everyone[i % 3]
        key = f"k/{i:02d}"
        body = rng.randbytes(rng.choice([1, 100, 5000, 1 << 20]))
        put(writer, bucket, key, body)
        written[key] = body
        for n in everyone:
            got = get(n, bucket, key)
            assert got == body, f"{key} written via node {writer.id}, node {n.id} read " \
                                f"{len(got)} bytes, md5 {value_of(got)} != {value_of(body)}"
    # Overwrite through a follower, read the new value everywhere.
    body = b"second version"
    put(f1, bucket, "k/00", body)
    written["k/00"] = body
    for n in everyone:
        assert get(n, bucket, "k/00") == body, n.id
    # Listings agree on every node.
    expect = {k: value_of(v) for k, v in written.items()}
    expect["first"] = value_of(data)
    for n in everyone:
        assert clusterlib.list_etags(n.client(), bucket) == expect, n.id
    # A delete through a follower is gone everywhere.
    f2.client().delete_object(Bucket=bucket, Key="first")
    for n in everyone:
        with pytest.raises(ClientError) as e:
            n.client().head_object(Bucket=bucket, Key="first")
        assert ternlib.http_status(e.value) == 404, n.id
    # Every node applied the same log.
    assert c.leader()[0] == lid
    for i in c.member_ids:
        if i != lid:
            target = c.wait_caught_up(i, lid, timeout_s=10)
            commit = ternlib.metric(c.node(i).metrics(), "tern_raft_commit_index")
            assert commit >= target, f"node {i}: tern_raft_commit_index {commit} < {target}"


# ----------------------------------------------------------------------------
# 2. leader SIGKILL under load, history checked for linearizability
# ----------------------------------------------------------------------------

def test_leader_sigkill_under_load_is_linearizable(make_cluster):
    load_s = 120.0 if SOAK else 20.0
    c = make_cluster(extra_args=SNAPSHOT_ARGS).start()
    c.leader()
    bucket = create_bucket(c.node(1))
    history = History()
    workload = Workload(c, bucket, history, threads=8, duration_s=load_s, seed=SEED,
                        read_timeout_s=10.0)
    rng = random.Random(SEED)
    kills = []
    workload.start()
    end_at = time.monotonic() + load_s
    try:
        for _ in range(100):
            # The fault schedule: the next kill 3-4 s after the cluster recovered from the last.
            if workload.stop_event.wait(rng.uniform(3.0, 4.0)):
                break
            if time.monotonic() > end_at - 2.0:
                break
            lid, term = c.leader(timeout_s=FAILOVER_S)
            victim = c.node(lid)
            others = [i for i in c.member_ids if i != lid]
            t0 = time.monotonic()
            victim.kill()
            new_lid, new_term = c.leader(timeout_s=FAILOVER_S, among=others)
            failover_s = time.monotonic() - t0
            assert new_term > term, (term, new_term)
            victim.start()
            victim.wait_up()
            kills.append((lid, term, new_lid, new_term, round(failover_s, 2)))
    finally:
        workload.stop_event.set()
        workload.join(timeout_s=60)
    print(f"kills (old leader, term, new leader, term, failover s): {kills}")
    print(history.summary())
    assert len(kills) >= (20 if SOAK else 3), f"only {len(kills)} kills happened"
    for n in c.running():
        n.wait_ready(FAILOVER_S)
    lid, _ = c.leader(timeout_s=FAILOVER_S)
    for i in c.member_ids:
        if i != lid:
            c.wait_caught_up(i, lid)
    acked = history.ack_count()
    assert acked >= 100, f"only {acked} writes acknowledged in {load_s}s: {history.summary()}"
    errors = verify_history(c, history, bucket, [c.node(i) for i in c.member_ids])
    assert not errors, "\n".join(errors[:20])


# ----------------------------------------------------------------------------
# 3. SIGSTOP / SIGCONT of the leader
# ----------------------------------------------------------------------------

def _get_in_thread(node, bucket, key, timeout_s):
    """Starts a GET in a thread; returns (thread, result dict with 'value' or 'error')."""
    out = {}

    def run():
        try:
            out["value"] = value_of(get(node, bucket, key, timeout_s=timeout_s))
        except ClientError as e:
            out["error"] = clusterlib.error_text(e)
            if ternlib.error_code(e) == "NoSuchKey":
                out["value"] = None
        except (BotoCoreError, OSError) as e:
            out["error"] = clusterlib.error_text(e)
        out["end"] = time.monotonic()
    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, out


def _put_in_thread(node, bucket, key, data, timeout_s):
    out = {}

    def run():
        try:
            put(node, bucket, key, data, timeout_s=timeout_s)
            out["ok"] = True
        except (BotoCoreError, ClientError, OSError) as e:
            out["ok"] = False
            out["error"] = clusterlib.error_text(e)
        out["end"] = time.monotonic()
    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, out


def test_paused_leader_is_replaced_then_steps_down_and_catches_up(make_cluster):
    c = make_cluster().start()
    lid, term = c.leader()
    old = c.node(lid)
    others = [i for i in c.member_ids if i != lid]
    bucket = create_bucket(c.node(others[0]))
    v1 = b"v1 before the pause"
    put(old, bucket, "k", v1)

    old.pause()
    paused_at = time.monotonic()
    new_lid, new_term = c.leader(timeout_s=FAILOVER_S, among=others)
    assert new_lid != lid and new_term > term
    # Writes continue through both remaining nodes.
    v2 = b"v2 written while the old leader was paused"
    put(c.node(others[1]), bucket, "k", v2)
    written = {}
    for i in range(20):
        body = f"during pause {i}".encode() * 50
        put(c.node(others[i % 2]), bucket, f"p/{i}", body)
        written[f"p/{i}"] = body
    assert time.monotonic() - paused_at > ELECTION_S

    # A GET and a PUT reach the paused process before it runs again (the kernel queues them),
    # so it handles them while it may still believe it leads: the GET must not return v1.
    get_th, get_out = _get_in_thread(old, bucket, "k", timeout_s=15.0)
    put_th, put_out = _put_in_thread(old, bucket, "after", b"sent during the pause", 15.0)
    wait_until(lambda: queued_requests(old) >= 2, 5.0, what="requests queued on the paused node")
    old.resume()
    get_th.join(timeout=30)
    put_th.join(timeout=30)
    assert not get_th.is_alive() and not put_th.is_alive()
    assert get_out.get("value") != value_of(v1), \
        "stale read: the resumed old leader returned the value overwritten while it was paused"
    print(f"GET on the resumed old leader: {get_out}; PUT: {put_out}")

    # It steps down, follows the new leader and catches up.
    c.wait_caught_up(lid, new_lid, timeout_s=FAILOVER_S)
    assert c.leader()[0] == new_lid
    assert get(old, bucket, "k") == v2
    for key, body in written.items():
        assert get(old, bucket, key) == body, key
    # A write through the old leader now works (forwarded to the new one).
    put_retrying(old, bucket, "after-catch-up", b"x" * 100)
    for n in c.live():
        assert get(n, bucket, "after-catch-up") == b"x" * 100


def queued_requests(node):
    """Connections to the node's S3 port with bytes the (stopped) process has not read yet,
    from /proc/net/tcp: the requests the kernel holds for it."""
    port_hex = f"{node.s3_port:04X}"
    count = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            local, state, queues = parts[1], parts[3], parts[4]
            rx_queue = int(queues.split(":")[1], 16)
            if local.endswith(":" + port_hex) and state == "01" and rx_queue > 0:
                count += 1
    return count


# ----------------------------------------------------------------------------
# 4. leader partitioned by the proxies
# ----------------------------------------------------------------------------

def test_isolated_leader_cannot_commit_and_rejoins(make_cluster):
    c = make_cluster().start()
    lid, term = c.leader()
    old = c.node(lid)
    others = [i for i in c.member_ids if i != lid]
    bucket = create_bucket(old)
    v1 = b"v1 before the partition"
    put(old, bucket, "k", v1)
    acked = {"k": v1}

    c.isolate(lid)
    isolated_at = time.monotonic()
    # A PUT and a GET sent to the isolated old leader: neither may succeed while it is cut off.
    put_th, put_out = _put_in_thread(old, bucket, "on-isolated", b"must not commit", 8.0)
    new_lid, new_term = c.leader(timeout_s=FAILOVER_S, among=others)
    assert new_lid != lid and new_term > term
    v2 = b"v2 written by the majority"
    put(c.node(others[0]), bucket, "k", v2)
    acked["k"] = v2
    for i in range(20):
        body = f"majority {i}".encode() * 40
        put(c.node(others[i % 2]), bucket, f"m/{i}", body)
        acked[f"m/{i}"] = body
    get_th, get_out = _get_in_thread(old, bucket, "k", timeout_s=8.0)
    get_th.join(timeout=30)
    put_th.join(timeout=30)
    assert not get_th.is_alive() and not put_th.is_alive()
    still_isolated = time.monotonic()
    assert put_out["end"] < still_isolated
    assert put_out.get("ok") is not True, "a PUT to the isolated old leader was acknowledged"
    assert get_out.get("value") != value_of(v1), \
        "stale read: the isolated old leader served the value the majority had overwritten"
    assert "value" not in get_out, f"isolated node answered a linearizable read: {get_out}"
    old_status = old.try_status()
    print(f"isolated old leader after {still_isolated - isolated_at:.1f}s: "
          f"{ {k: old_status[k] for k in ('role', 'term', 'leader_id')} if old_status else None}; "
          f"PUT {put_out}; GET {get_out}")

    c.heal()
    c.wait_caught_up(lid, c.leader(timeout_s=FAILOVER_S)[0], timeout_s=FAILOVER_S)
    lid_after, _ = c.leader()
    assert lid_after != lid, "the old leader took over again after heal"
    for n in c.live():
        for key, body in acked.items():
            assert get(n, bucket, key) == body, f"node {n.id} lost acknowledged {key}"


# ----------------------------------------------------------------------------
# 5. no election storm from a partitioned follower
# ----------------------------------------------------------------------------

def test_partitioned_follower_does_not_disrupt(make_cluster):
    partition_s = 60.0 if SOAK else 10.0
    c = make_cluster().start()
    lid, term = c.leader()
    follower = [i for i in c.member_ids if i != lid][0]
    connected = [i for i in c.member_ids if i != follower]
    bucket = create_bucket(c.node(lid))

    c.isolate(follower)
    samples = []
    violations = []
    acks = 0
    end_at = time.monotonic() + partition_s
    for i in range(int(partition_s / 0.1) + 10):
        if time.monotonic() >= end_at:
            break
        for n in connected:
            s = c.node(n).try_status()
            if s is None or s["leader_id"] != lid or s["term"] != term:
                violations.append((round(time.monotonic() - end_at + partition_s, 2), n,
                                   s and (s["role"], s["term"], s["leader_id"])))
        put(c.node(connected[i % 2]), bucket, f"during/{i}", b"d" * 100)
        acks += 1
        fs = c.node(follower).try_status()
        if fs:
            samples.append(fs["term"])
        time.sleep(0.1)  # a sampling period, not a wait for a condition
    isolated_term_max = max(samples) if samples else None
    assert not violations, f"the connected pair changed leader or term during the partition " \
                           f"(term {term}, leader {lid}): {violations[:10]}"
    assert acks > 0

    c.heal()
    c.wait_caught_up(follower, lid, timeout_s=FAILOVER_S)
    # Observe for a few election timeouts after the heal: the leader stays.
    terms = set()
    leaders = set()
    observe_until = time.monotonic() + 3 * ELECTION_S + 1
    for _ in range(200):
        if time.monotonic() >= observe_until:
            break
        s = c.node(lid).try_status()
        if s:
            terms.add(s["term"])
            leaders.add(s["leader_id"])
        time.sleep(0.1)  # sampling period
    final_lid, final_term = c.leader()
    print(f"term {term}; isolated follower's highest term {isolated_term_max}; after heal "
          f"terms {sorted(terms)}, leaders {sorted(leaders)}")
    assert final_lid == lid and leaders == {lid}, \
        f"the healed follower disrupted the leader: leaders after heal {leaders}, final {final_lid}"
    assert final_term - term <= 1, f"term went from {term} to {final_term}"
    assert isolated_term_max is None or isolated_term_max <= term + 1, \
        f"the isolated follower's term climbed to {isolated_term_max} (from {term}): no pre-vote?"


# ----------------------------------------------------------------------------
# 7. whole-cluster restart
# ----------------------------------------------------------------------------

def test_whole_cluster_restart_keeps_acknowledged_data(make_cluster):
    c = make_cluster().start()
    lid, term = c.leader()
    bucket = create_bucket(c.node(1))
    rng = random.Random(SEED)
    written = {}
    nodes = [c.node(i) for i in c.member_ids]
    for i in range(60):
        key = f"r/{i % 45:02d}"  # the last 15 overwrite earlier keys
        body = rng.randbytes(rng.choice([10, 1000, 70000]))
        put(nodes[i % 3], bucket, key, body)
        written[key] = body
    errors = c.stop_all()
    assert not errors, "\n".join(errors)
    c.start()
    lid2, term2 = c.leader()
    assert term2 > term
    for n in nodes:
        listed = clusterlib.list_etags(n.client(), bucket)
        assert listed == {k: value_of(v) for k, v in written.items()}, f"node {n.id} listing"
        for key, body in written.items():
            assert get(n, bucket, key) == body, f"node {n.id} {key}"
    put(nodes[0], bucket, "after-restart", b"ok")
    assert get(nodes[2], bucket, "after-restart") == b"ok"


# ----------------------------------------------------------------------------
# 6. membership changes under load (last in the file: ctest runs it with -x, and these are
#    the newest code paths, so a failure here should not hide the tests above)
# ----------------------------------------------------------------------------

# A membership change commits in a few heartbeats; the answer may take no longer than this.
ADMIN_ANSWER_S = 10.0


def _admin_retrying(node, action, deadline_s=30.0, **params):
    """POST a membership change, retrying 409 (EAGAIN: another change or catch-up in progress)
    and 503 until deadline_s; returns (status, body) of the last attempt (status None: no
    answer within ADMIN_ANSWER_S)."""
    deadline = time.monotonic() + deadline_s
    last = None
    for _ in range(1000):
        try:
            last = node.admin(action, timeout_s=ADMIN_ANSWER_S, **params)
        except (OSError, EOFError, ValueError) as e:
            last = (None, repr(e))
        if last[0] == 200 or (last[0] is not None and last[0] not in (409, 503, 504)):
            return last
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    return last


def config_of(node):
    """Sorted member ids in node's configuration, or None if it does not answer."""
    s = node.try_status()
    return None if s is None else sorted(m["id"] for m in s["members"])


def test_membership_changes_under_load(make_cluster):
    load_s = 240.0 if SOAK else 60.0
    c = make_cluster(spares=1, extra_args=SNAPSHOT_ARGS).start()
    lid, term = c.leader()
    bucket = create_bucket(c.node(lid))
    members = set(c.member_ids)
    history = History()
    workload = Workload(c, bucket, history, threads=4, duration_s=load_s, seed=SEED,
                        targets=lambda: [c.node(i) for i in sorted(members) if c.node(i).running()])
    started = time.monotonic()
    workload.start()
    notes = []
    try:
        # Let some data accumulate so node 4 has something to catch up on.
        wait_until(lambda: history.ack_count() >= 50, 30, what="50 acknowledged writes")
        n4 = c.node(4)
        n4.start()
        n4.wait_up()
        follower = [i for i in c.member_ids if i != lid][0]
        status, body = _admin_retrying(c.node(follower), "add-node", id=4, peer=c.join_address(4))
        assert status == 200, f"add-node via follower {follower}: {status} {body}"

        def role_of(node_id):
            leader_id = c.agreed_leader([i for i in members])
            if not leader_id:
                return None
            s = c.node(leader_id[0]).try_status()
            for m in (s or {}).get("members", []):
                if m["id"] == node_id:
                    return m["role"]
            return None
        members.add(4)
        try:
            wait_until(lambda: role_of(4) == "voter", 20, interval_s=0.1,
                       what="automatic promotion of node 4")
            notes.append("node 4 promoted automatically")
        except TimeoutError:
            notes.append("node 4 NOT promoted automatically within 20s; promote-node used")
            status, body = _admin_retrying(c.node(c.leader()[0]), "promote-node", id=4)
            assert status == 200, f"promote-node 4: {status} {body}"
            wait_until(lambda: role_of(4) == "voter", 20, interval_s=0.1, what="node 4 voter")
        n4.wait_ready()

        # Remove a follower of the original three.
        lid, _ = c.leader(among=sorted(members))
        victim = [i for i in c.member_ids if i != lid][-1]
        members.discard(victim)
        status, body = _admin_retrying(c.node(lid), "remove-node", id=victim)
        assert status == 200, f"remove-node {victim}: {status} {body}"
        wait_until(lambda: c.agreed_leader(sorted(members)) and all(
            config_of(c.node(i)) == sorted(members) for i in members), 20, interval_s=0.1,
            what=f"configuration {sorted(members)}")
        rc = c.node(victim).stop()
        assert rc == 0, f"removed node {victim} exited with {rc}"
        acks_before = history.ack_count()
        wait_until(lambda: history.ack_count() >= acks_before + 20, 20,
                   what="writes after removing a follower")

        # Remove the leader itself, asking the leader: a new leader among the remaining two
        # takes over. The answer is checked at the end, so a wrong one does not hide the rest.
        lid, term = c.leader(among=sorted(members))
        members.discard(lid)
        removed_leader = lid
        asked = time.monotonic()
        leader_removal = _admin_retrying(c.node(lid), "remove-node", deadline_s=ADMIN_ANSWER_S,
                                         id=lid)
        leader_removal += (round(time.monotonic() - asked, 1),)
        new_lid, new_term = c.leader(timeout_s=FAILOVER_S, among=sorted(members))
        assert new_lid != lid
        wait_until(lambda: all(config_of(c.node(i)) == sorted(members) for i in members), 20,
                   interval_s=0.1, what=f"configuration {sorted(members)}")
        rc = c.node(lid).stop()
        assert rc == 0, f"removed old leader {lid} exited with {rc}"
        acks_before = history.ack_count()
        wait_until(lambda: history.ack_count() >= acks_before + 20, 20,
                   what="writes after removing the leader")
    finally:
        workload.stop_event.set()
        workload.join(timeout_s=60)
    stopped = time.monotonic()
    print(f"membership: {notes}; {history.summary()}")
    gap = history.longest_ack_gap(started + 2, stopped)
    assert gap < FAILOVER_S, f"no write was acknowledged for {gap:.1f}s"
    assert 4 in members
    lid, _ = c.leader(among=sorted(members))
    if lid != 4:
        c.wait_caught_up(4, lid)
    errors = verify_history(c, history, bucket, [c.node(4)])
    assert not errors, "\n".join(errors[:20])
    assert leader_removal[0] == 200, \
        f"remove-node {removed_leader} sent to that leader: the removal took effect (new " \
        f"leader {new_lid}) but the answer was {leader_removal[:2]} after {leader_removal[2]}s"


@pytest.mark.parametrize("ask", ["leader", "follower"])
def test_remove_leader_answer_matches_outcome(make_cluster, ask):
    """remove-node of the current leader, asked of the leader itself or of a follower (which
    forwards it): the leader is removed, a new one is elected among the other two, and the
    answer says 200 promptly -- an error answer for a change that took effect misleads the
    operator into retrying or giving up. Which follower wins the next election is up to
    chance, so the follower case runs up to 3 fresh clusters."""
    for trial in range(3 if ask == "follower" else 1):
        c = make_cluster().start()
        lid, term = c.leader()
        others = [i for i in c.member_ids if i != lid]
        asked_node = c.node(lid if ask == "leader" else others[trial % 2])
        asked = time.monotonic()
        # Retryable refusals (409 EAGAIN, e.g. before the new leader committed an entry of its
        # term; 503) change nothing and are retried; a timeout (None) counts as the answer.
        status, body = _admin_retrying(asked_node, "remove-node", deadline_s=ADMIN_ANSWER_S,
                                       id=lid)
        answered_s = time.monotonic() - asked
        print(f"trial {trial}: remove-node {lid} asked of node {asked_node.id}: {status} {body} "
              f"after {answered_s:.1f}s")
        new_lid, new_term = c.leader(timeout_s=FAILOVER_S, among=others)
        wait_until(lambda: all(config_of(c.node(i)) == others for i in others), 10,
                   interval_s=0.1, what=f"configuration {others}")
        assert status == 200, \
            f"remove-node {lid} asked of node {asked_node.id} ({ask}): the leader was removed " \
            f"(new leader {new_lid}, configuration {others}) but the answer was {status} " \
            f"{body} after {answered_s:.1f}s"
        assert c.node(lid).stop() == 0
        bucket = create_bucket(c.node(others[0]))
        put(c.node(others[1]), bucket, "after", b"ok")
        errors = c.close()
        assert not errors, errors
