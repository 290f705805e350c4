"""Three regions on loopback: blocks go only where placement puts them, other regions read them
remotely (and keep a copy once the engine wants one there), replicas the engine no longer wants
are dropped, and bucket policies hold at every observation."""
import hashlib
import json
import os
import time

import pytest

import ternlib

REGIONS = ["us-east", "eu-west", "ap-southeast"]
BLOCK = 1024 * 1024  # ternd's default block size


def topology_doc(ports, policies):
    egress = {"us-east": {"eu-west": 0.02, "ap-southeast": 0.08},
              "eu-west": {"us-east": 0.02, "ap-southeast": 0.08},
              "ap-southeast": {"us-east": 0.09, "eu-west": 0.09}}
    rtt = {"us-east": {"eu-west": 75, "ap-southeast": 215},
           "eu-west": {"us-east": 75, "ap-southeast": 170},
           "ap-southeast": {"us-east": 215, "eu-west": 170}}
    return {"regions": [{"name": r, "storage_usd_per_gb_month": 0.023,
                         "s3_endpoints": [f"http://127.0.0.1:{ports[r]}"]} for r in REGIONS],
            "egress_usd_per_gb": egress, "rtt_ms": rtt, "buckets": policies}


@pytest.fixture
def regions(tmp_path):
    ports = {r: ternlib.free_port() for r in REGIONS}
    topology = tmp_path / "topology.json"
    topology.write_text(json.dumps(topology_doc(ports, {"*": {"min_regions": 1}})))
    nodes = {}
    for r in REGIONS:
        os.makedirs(tmp_path / f"logs-{r}")
        # Demand is forgotten in seconds here (a day in production), so a replica nobody reads
        # any more is dropped within the test.
        nodes[r] = ternlib.Ternd(tmp_path / f"data-{r}", tmp_path / f"logs-{r}",
                                 extra_args=["--topology", str(topology), "--region", r,
                                             "--placement-half-life-s", "2"])
        nodes[r].start(port=ports[r])
    yield nodes
    for n in nodes.values():
        if n.running():
            assert n.stop() == 0, n.log_tail()


def signer(node):
    return ternlib.Signer(node.hostport, node.access_key, node.secret_key)


def block_ids(data):
    return b"".join(hashlib.sha256(data[i:i + BLOCK]).digest() for i in range(0, len(data), BLOCK))


def held(node, data):
    """How many of data's blocks the region stores ('1' per block held)."""
    r = signer(node).request("POST", "/_tern/geo/have", body=block_ids(data))
    assert r.status == 200, r
    return r.body.decode().count("1")


def egress(node):
    r = signer(node).request("GET", "/_tern/egress")
    assert r.status == 200, r
    return json.loads(r.body)


def visible(client, bucket, key):
    try:
        client.head_object(Bucket=bucket, Key=key)
        return True
    except Exception:  # noqa: BLE001 - not there yet
        return False


def body_or_none(node, key, bucket="ahead"):
    try:
        return node.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception:  # noqa: BLE001 - not there yet
        return None


def make_bucket(regions, name, policy=None):
    us = regions["us-east"]
    us.client().create_bucket(Bucket=name)
    if policy is not None:
        r = signer(us).request("PUT", f"/_tern/buckets/{name}/policy",
                               body=json.dumps(policy).encode())
        assert r.status == 200, r
    for r in REGIONS[1:]:
        c = regions[r].client()
        ternlib.wait_until(lambda c=c: any(b["Name"] == name for b in c.list_buckets()["Buckets"]),
                           30, what=f"bucket {name} in {r}")
        if policy is not None:
            def same_policy(node=regions[r]):
                got = signer(node).request("GET", f"/_tern/buckets/{name}/policy")
                return got.status == 200 and \
                    json.loads(got.body)["min_regions"] == policy["min_regions"]
            ternlib.wait_until(same_policy, 30, what=f"the policy of {name} in {r}")


def test_blocks_stay_where_placement_puts_them_and_reads_elsewhere_are_remote(regions):
    us, eu, ap = (regions[r] for r in REGIONS)
    make_bucket(regions, "placed")
    data = ternlib.random_bytes(3 * BLOCK + 77, seed=11)
    blocks = len(block_ids(data)) // 32
    us.client().put_object(Bucket="placed", Key="obj", Body=data)
    for r in (eu, ap):
        ternlib.wait_until(lambda r=r: visible(r.client(), "placed", "obj"), 30,
                           what="the manifest in every region")
    # With min_regions 1 and no reads yet, only the origin holds the bytes: nothing was shipped.
    assert held(us, data) == blocks
    assert held(eu, data) == 0 and held(ap, data) == 0
    assert egress(us)["by_cause"]["replication"]["bytes"] < len(data)
    # A read in ap-southeast is served from us-east, byte for byte, and counted as remote.
    assert ap.client().get_object(Bucket="placed", Key="obj")["Body"].read() == data
    remote = egress(ap)["by_cause"]["remote_read"]["bytes"]
    assert remote >= len(data)
    # A ranged read that crosses block boundaries is remote too, and exact.
    got = ap.client().get_object(Bucket="placed", Key="obj", Range=f"bytes={BLOCK - 5}-{2 * BLOCK + 9}")
    assert got["Body"].read() == data[BLOCK - 5:2 * BLOCK + 10]
    # The engine wanted a replica where the reads are: it was made from the read's bytes...
    ternlib.wait_until(lambda: held(ap, data) == blocks, 30, what="ap-southeast to keep a copy")
    # ...so the next read is local: no more remote bytes.
    before = egress(ap)["by_cause"]["remote_read"]["bytes"]
    assert ap.client().get_object(Bucket="placed", Key="obj")["Body"].read() == data
    assert egress(ap)["by_cause"]["remote_read"]["bytes"] == before
    # Once nobody reads it there, ap-southeast's engine drops that replica (us-east, the
    # origin, still holds the object: min_regions 1), and a later read is remote again.
    ternlib.wait_until(lambda: held(ap, data) == 0, 60, what="ap-southeast to drop its replica")
    assert held(us, data) == blocks
    assert ap.client().get_object(Bucket="placed", Key="obj")["Body"].read() == data


def test_min_regions_and_allowed_regions_hold_at_every_observation(regions):
    us, eu, ap = (regions[r] for r in REGIONS)
    make_bucket(regions, "eu-us", {"min_regions": 2, "allowed_regions": ["us-east", "eu-west"]})
    objects = {f"k{i}": ternlib.random_bytes(BLOCK + 1000 * i, seed=100 + i) for i in range(4)}
    for key, data in objects.items():
        us.client().put_object(Bucket="eu-us", Key=key, Body=data)
    for key, data in objects.items():
        # eu-west holds every block as soon as the manifest is visible there (blocks ship first).
        ternlib.wait_until(lambda key=key: visible(eu.client(), "eu-us", key), 30,
                           what=f"{key} in eu-west")
        ternlib.wait_until(lambda key=key: visible(ap.client(), "eu-us", key), 30,
                           what=f"{key} in ap-southeast")
        n = len(block_ids(data)) // 32
        assert held(us, data) == n and held(eu, data) == n
    # ap-southeast reads them all, several times: served remotely, never stored there.
    for _ in range(3):
        for key, data in objects.items():
            assert ap.client().get_object(Bucket="eu-us", Key=key)["Body"].read() == data
            assert held(ap, data) == 0
            assert held(us, data) + held(eu, data) == 2 * (len(block_ids(data)) // 32)


def test_a_remote_read_fails_over_to_another_holder(regions):
    us, eu, ap = (regions[r] for r in REGIONS)
    make_bucket(regions, "twice", {"min_regions": 2, "allowed_regions": ["us-east", "eu-west"]})
    data = ternlib.random_bytes(2 * BLOCK + 3, seed=7)
    us.client().put_object(Bucket="twice", Key="obj", Body=data)
    ternlib.wait_until(lambda: visible(ap.client(), "twice", "obj"), 30, what="the manifest")
    ternlib.wait_until(lambda: held(eu, data) == 3, 30, what="eu-west's copy")
    # Either holder down, the read is served by the other.
    for down in (us, eu):
        assert down.stop() == 0
        assert ap.client().get_object(Bucket="twice", Key="obj")["Body"].read() == data
        down.start(port=down.port)
    # Both down: a clear 503, not a hang or a short body.
    assert us.stop() == 0 and eu.stop() == 0
    with pytest.raises(Exception) as err:
        ap.client().get_object(Bucket="twice", Key="obj")["Body"].read()
    assert ternlib.http_status(err.value) == 503, err.value


def test_a_shipped_replica_nobody_reads_is_dropped_once_the_policy_allows(regions):
    us, eu, ap = (regions[r] for r in REGIONS)
    make_bucket(regions, "relaxed", {"min_regions": 2})
    data = ternlib.random_bytes(BLOCK + 5, seed=77)
    us.client().put_object(Bucket="relaxed", Key="obj", Body=data)
    ternlib.wait_until(lambda: visible(ap.client(), "relaxed", "obj") and
                       visible(eu.client(), "relaxed", "obj"), 30, what="the manifest everywhere")
    # min_regions 2: placement shipped it to one more region, which keeps it while the policy
    # says two.
    second = [n for n in (eu, ap) if held(n, data) == 2]
    assert len(second) == 1, "not exactly one region besides us-east holds the blocks"
    assert held(us, data) == 2
    # The policy relaxes: nobody reads the object there, so after a demand half-life (2 s here)
    # that region drops its replica; us-east, the origin, keeps it.
    r = signer(us).request("PUT", "/_tern/buckets/relaxed/policy",
                           body=json.dumps({"min_regions": 1}).encode())
    assert r.status == 200, r
    ternlib.wait_until(lambda: held(second[0], data) == 0, 60,
                       what="the unread replica to be dropped")
    assert held(us, data) == 2
    assert ap.client().get_object(Bucket="relaxed", Key="obj")["Body"].read() == data


def test_a_read_continues_from_another_holder_when_its_source_dies_mid_stream(regions):
    us, eu, ap = (regions[r] for r in REGIONS)
    make_bucket(regions, "midway", {"min_regions": 2, "allowed_regions": ["us-east", "eu-west"]})
    data = ternlib.random_bytes(10 * BLOCK + 9, seed=5)
    us.client().put_object(Bucket="midway", Key="big", Body=data)
    ternlib.wait_until(lambda: visible(ap.client(), "midway", "big"), 30, what="the manifest")
    ternlib.wait_until(lambda: held(eu, data) == 11, 30, what="eu-west's copy")

    def remote_from():
        flows = egress(ap)["flows"]
        return {f["from"]: f["bytes"] for f in flows
                if f["to"] == "ap-southeast" and f["cause"] == "remote_read" and f["bytes"]}
    body = ap.client().get_object(Bucket="midway", Key="big")["Body"]
    first = body.read(BLOCK)  # the stream has started: at least its first block came
    sources = remote_from()
    assert len(sources) == 1, sources
    source = regions[next(iter(sources))]
    source.kill()  # the holder serving the read dies mid-stream
    rest = body.read()
    assert first + rest == data
    # The blocks after the death came from the other holder.
    assert len(remote_from()) == 2, remote_from()
    source.start(port=source.port)


def test_the_ship_rate_bounds_what_a_leader_sends_each_region(tmp_path):
    # Two of the three regions run (ap-southeast stays down): us-east's second copy goes to
    # eu-west, the cheapest to ship to.
    ports = {r: ternlib.free_port() for r in REGIONS}
    topology = tmp_path / "topology.json"
    topology.write_text(json.dumps(topology_doc(ports, {"*": {"min_regions": 2}})))
    nodes = {}
    try:
        for r in REGIONS[:2]:
            os.makedirs(tmp_path / f"logs-{r}")
            nodes[r] = ternlib.Ternd(tmp_path / f"data-{r}", tmp_path / f"logs-{r}",
                                     extra_args=["--topology", str(topology), "--region", r,
                                                 "--geo-ship-rate", "256K"])
            nodes[r].start(port=ports[r])
        us, eu = nodes["us-east"], nodes["eu-west"]
        us.client().create_bucket(Bucket="slow")
        ternlib.wait_until(lambda: visible(eu.client(), "slow", "x") or
                           any(b["Name"] == "slow" for b in eu.client().list_buckets()["Buckets"]),
                           30, what="the bucket in eu-west")
        data = ternlib.random_bytes(BLOCK, seed=8)
        us.client().put_object(Bucket="slow", Key="x", Body=data)
        start = time.monotonic()
        ternlib.wait_until(lambda: held(eu, data) == 1, 60, what="the block in eu-west")
        # 1 MiB at 256 KiB/s takes four seconds; without the bound, milliseconds on loopback.
        assert time.monotonic() - start >= 3.0
    finally:
        for n in nodes.values():
            if n.running():
                assert n.stop() == 0, n.log_tail()
