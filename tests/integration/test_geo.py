"""Two regions on loopback: each ships its changes (and their blocks) to the other."""
import json
import shutil
import os

import pytest
from botocore.exceptions import ClientError

import ternlib

REGIONS = ["us-east", "eu-west"]


GEO_KEY, GEO_SECRET = "geodeploykey", "geo-deployment-secret"


@pytest.fixture(params=["root", "deployment-key"])
def regions(tmp_path, request):
    # Every test runs twice: regions signing with the root key, and with a deployment key.
    extra = [] if request.param == "root" else ["--geo-access-key", GEO_KEY,
                                                "--geo-secret-key", GEO_SECRET]
    ports = {r: ternlib.free_port() for r in REGIONS}
    topology = tmp_path / "topology.json"
    topology.write_text(json.dumps({
        "regions": [{"name": r, "storage_usd_per_gb_month": 0.023,
                     "s3_endpoints": [f"http://127.0.0.1:{ports[r]}"]} for r in REGIONS],
        "egress_usd_per_gb": {"us-east": {"eu-west": 0.02}, "eu-west": {"us-east": 0.02}},
        "rtt_ms": {"us-east": {"eu-west": 75}, "eu-west": {"us-east": 75}}}))
    nodes = {}
    for r in REGIONS:
        os.makedirs(tmp_path / f"logs-{r}")
        nodes[r] = ternlib.Ternd(tmp_path / f"data-{r}", tmp_path / f"logs-{r}",
                                 extra_args=["--topology", str(topology), "--region", r] + extra)
        nodes[r].start(port=ports[r])
    yield nodes
    for n in nodes.values():
        if n.running():
            assert n.stop() == 0, n.log_tail()


def body_or_none(s3, bucket, key):
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError:
        return None


def test_changes_reach_the_other_region(regions):
    a, b = regions["us-east"].client(), regions["eu-west"].client()
    a.create_bucket(Bucket="shared")
    ternlib.wait_until(lambda: any(x["Name"] == "shared" for x in b.list_buckets()["Buckets"]),
                       30, what="the bucket in eu-west")
    data = ternlib.random_bytes(3 * 1024 * 1024 + 17, seed=5)
    a.put_object(Bucket="shared", Key="big", Body=data)
    ternlib.wait_until(lambda: body_or_none(b, "shared", "big") == data, 30,
                       what="the object's bytes in eu-west")
    # An overwrite in the other region comes back.
    b.put_object(Bucket="shared", Key="big", Body=b"rewritten in eu-west")
    ternlib.wait_until(lambda: body_or_none(a, "shared", "big") == b"rewritten in eu-west", 30,
                       what="the overwrite in us-east")
    # A delete propagates.
    a.delete_object(Bucket="shared", Key="big")
    ternlib.wait_until(lambda: body_or_none(b, "shared", "big") is None, 30,
                       what="the delete in eu-west")
    # The delete's tombstone is collected in both regions once each has passed it (the other
    # region applied it, or reported an idle clock beyond it).
    def tombstones(node):
        r = ternlib.Signer(node.hostport, node.access_key, node.secret_key).request(
            "GET", "/_tern/geo/status")
        assert r.status == 200, r
        return json.loads(r.body)["tombstones"]
    ternlib.wait_until(lambda: tombstones(regions["us-east"]) == 0 and
                       tombstones(regions["eu-west"]) == 0, 60,
                       what="both regions to collect the tombstone")
    # Once every peer has applied it, the origin trims its geo log.
    ternlib.wait_until(lambda: "log trimmed through" in regions["us-east"].log_text(), 30,
                       what="us-east to trim its geo log")
    # Egress: with min_regions 1 and no reads yet, placement kept the bytes in us-east, so what
    # us-east replicated was metadata; eu-west's read fetched the bytes (a remote read).
    node = regions["us-east"]
    signer = ternlib.Signer(node.hostport, node.access_key, node.secret_key)
    doc = json.loads(signer.request("GET", "/_tern/egress").body)
    assert 0 < doc["by_cause"]["replication"]["bytes"] < len(data), doc
    eu = regions["eu-west"]
    eu_doc = json.loads(ternlib.Signer(eu.hostport, eu.access_key, eu.secret_key)
                        .request("GET", "/_tern/egress").body)
    assert eu_doc["by_cause"]["remote_read"]["bytes"] >= len(data), eu_doc
    # Next to it, what full replication would have cost for the same client writes.
    full = doc["full_replication"]
    assert full["writes"] == 1 and full["written_bytes"] == len(data), full  # the big PUT
    assert full["usd"] > 0 and full["ratio"] > 0, full


def test_concurrent_writes_converge(regions):
    a, b = regions["us-east"].client(), regions["eu-west"].client()
    a.create_bucket(Bucket="race")
    ternlib.wait_until(lambda: any(x["Name"] == "race" for x in b.list_buckets()["Buckets"]),
                       30, what="the bucket in eu-west")
    for i in range(10):
        a.put_object(Bucket="race", Key=f"k{i % 3}", Body=f"a{i}".encode())
        b.put_object(Bucket="race", Key=f"k{i % 3}", Body=f"b{i}".encode())

    def same():
        return all(body_or_none(a, "race", f"k{k}") == body_or_none(b, "race", f"k{k}")
                   is not None for k in range(3))
    ternlib.wait_until(same, 30, what="both regions to hold the same winner for every key")


def test_a_region_that_was_down_catches_up(regions):
    a, b = regions["us-east"].client(), regions["eu-west"].client()
    a.create_bucket(Bucket="later")
    ternlib.wait_until(lambda: any(x["Name"] == "later" for x in b.list_buckets()["Buckets"]),
                       30, what="the bucket in eu-west")
    eu = regions["eu-west"]
    assert eu.stop() == 0
    for i in range(20):
        a.put_object(Bucket="later", Key=f"while-down-{i}", Body=f"v{i}".encode())
    eu.start(port=eu.port)
    b = eu.client()
    ternlib.wait_until(lambda: all(body_or_none(b, "later", f"while-down-{i}") == f"v{i}".encode()
                                   for i in range(20)), 60,
                       what="the writes made while eu-west was down")


def test_a_region_that_lost_its_state_is_reseeded(regions):
    a = regions["us-east"].client()
    a.create_bucket(Bucket="reseed")
    b = regions["eu-west"].client()
    ternlib.wait_until(lambda: any(x["Name"] == "reseed" for x in b.list_buckets()["Buckets"]),
                       30, what="the bucket in eu-west")
    data = {f"k{i}": ternlib.random_bytes(2000 + i, seed=i) for i in range(6)}
    for k, v in data.items():
        a.put_object(Bucket="reseed", Key=k, Body=v)
    a.delete_object(Bucket="reseed", Key="k0")
    del data["k0"]
    ternlib.wait_until(lambda: all(body_or_none(b, "reseed", k) == v for k, v in data.items()),
                       30, what="the objects in eu-west")
    # us-east trims its log once eu-west has applied all of it: what eu-west lost from here on
    # is no longer in any log.
    us = regions["us-east"]
    ternlib.wait_until(lambda: "log trimmed through" in us.log_text(), 30,
                       what="us-east to trim its geo log")
    eu = regions["eu-west"]
    assert eu.stop() == 0
    shutil.rmtree(eu.data_dir)
    eu.start(port=eu.port)
    b = eu.client()
    # Back empty, it is re-seeded with us-east's current state, then follows the log again.
    ternlib.wait_until(lambda: all(body_or_none(b, "reseed", k) == v for k, v in data.items()),
                       60, what="eu-west to be re-seeded")
    assert body_or_none(b, "reseed", "k0") is None
    assert "re-seeding it with this region's current state" in us.log_text()
    # What us-east sent again is counted as repair, not as replication of new writes.
    doc = json.loads(ternlib.Signer(us.hostport, us.access_key, us.secret_key)
                     .request("GET", "/_tern/egress").body)
    assert doc["by_cause"]["repair"]["bytes"] > 0, doc["by_cause"]
    a.put_object(Bucket="reseed", Key="after", Body=b"after the re-seed")
    ternlib.wait_until(lambda: body_or_none(b, "reseed", "after") == b"after the re-seed", 30,
                       what="a later write in eu-west")


def test_the_deployment_key_opens_only_the_geo_endpoints(regions):
    node = regions["us-east"]
    geo = ternlib.Signer(node.hostport, GEO_KEY, GEO_SECRET)
    r = geo.request("GET", "/_tern/geo/status")
    if "--geo-access-key" not in node.extra_args:
        assert r.status == 403, r  # not configured: an unknown key
        return
    assert r.status == 200, r
    # Anything else is refused: S3 operations and the other admin endpoints.
    for method, path in (("GET", "/"), ("PUT", "/stolen"), ("GET", "/_tern/egress"),
                         ("GET", "/_tern/placement/stats")):
        r = geo.request(method, path)
        assert r.status == 403 and r.s3_code == "AccessDenied", (method, path, r)
        assert b"deployment key" in r.body, r


def test_geo_endpoints_refuse_bad_input_and_store_nothing(regions):
    import hashlib
    node = regions["eu-west"]
    s = ternlib.Signer(node.hostport, node.access_key, node.secret_key)
    good = b"a block that travelled intact"
    bad = b"a block that was damaged on the way"
    gid, bid = hashlib.sha256(good).digest(), hashlib.sha256(bad).digest()
    # A batch with one damaged block stores none of them, the good one included.
    body = gid + len(good).to_bytes(4, "little") + good + bid + len(bad).to_bytes(4, "little") + \
        bad[:-1] + b"X"
    r = s.request("POST", "/_tern/geo/blocks", body=body)
    assert r.status == 400 and r.s3_code == "BadDigest", r
    assert s.request("POST", "/_tern/geo/have", body=gid).body == b"0"
    # Truncated: the length says more than came.
    r = s.request("POST", "/_tern/geo/blocks", body=gid + (100).to_bytes(4, "little") + good)
    assert r.status == 400 and r.s3_code == "InvalidRequest", r
    r = s.request("POST", "/_tern/geo/block", params=[("id", bid.hex())], body=good)
    assert r.status == 400 and r.s3_code == "BadDigest", r
    r = s.request("POST", "/_tern/geo/have", body=b"short")
    assert r.status == 400 and r.s3_code == "InvalidRequest", r
    r = s.request("GET", "/_tern/geo/block", params=[("id", "nothex")])
    assert r.status == 400 and r.s3_code == "InvalidArgument", r
    r = s.request("GET", "/_tern/geo/block", params=[("id", gid.hex())])
    assert r.status == 404 and r.s3_code == "NoSuchBlock", r
    r = s.request("POST", "/_tern/geo/apply", params=[("format", "2")], body=b"\x05\x00\x00\x00junk")
    assert r.status == 400 and r.s3_code == "InvalidRequest", r
    r = s.request("POST", "/_tern/geo/mark", params=[("origin", "0000000g"), ("hlc", "1")])
    assert r.status == 400 and r.s3_code == "InvalidArgument", r
    r = s.request("POST", "/_tern/geo/mark", params=[("origin", "00000001"), ("hlc", "x")])
    assert r.status == 400 and r.s3_code == "InvalidArgument", r
    # The good block alone goes in.
    r = s.request("POST", "/_tern/geo/blocks",
                  body=gid + len(good).to_bytes(4, "little") + good)
    assert r.status == 200, r
    assert s.request("POST", "/_tern/geo/have", body=gid + bid).body == b"10"
