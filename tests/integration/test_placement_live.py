"""The placement engine inside ternd: fed by the accesses a node serves, explained on demand."""
import json
import subprocess

import pytest

import ternlib

REGIONS = ["us-east", "eu-west", "ap-northeast"]


@pytest.fixture
def node(ternd_factory, tmp_path):
    topology = tmp_path / "topology.json"
    egress = {a: {b: (0.09 if a == "ap-northeast" else 0.02) for b in REGIONS if b != a}
              for a in REGIONS}
    topology.write_text(json.dumps({
        "regions": [{"name": r, "storage_usd_per_gb_month": 0.023} for r in REGIONS],
        "egress_usd_per_gb": egress,
        "rtt_ms": {a: {b: 100 for b in REGIONS if b != a} for a in REGIONS}}))
    return ternd_factory(extra_args=["--topology", str(topology), "--region", "us-east"])


def explain(signer, bucket, key):
    return signer.request("GET", "/_tern/placement/explain",
                          params=[("bucket", bucket), ("key", key)])


def test_explain_follows_writes_and_reads(node):
    s3 = node.client()
    s3.create_bucket(Bucket="media")
    signer = ternlib.Signer(node.hostport, node.access_key, node.secret_key)
    r = signer.request("PUT", "/_tern/buckets/media/policy",
                       body=json.dumps({"min_regions": 2}).encode())
    assert r.status == 200, r
    key = "photos/2024/a b+c.jpg"
    s3.put_object(Bucket="media", Key=key, Body=b"x" * 5000)
    for _ in range(5):
        assert s3.get_object(Bucket="media", Key=key)["Body"].read() == b"x" * 5000
    r = explain(signer, "media", key)
    assert r.status == 200, r
    doc = json.loads(r.body)
    assert doc["bucket"] == "media" and doc["key"] == key and doc["bytes"] == 5000, doc
    assert [x["name"] for x in doc["regions"]] == REGIONS
    by = {x["name"]: x for x in doc["regions"]}
    # min_regions 2: the write's region and one more in the target set.
    assert len(doc["holders"]) == 2 and "us-east" in doc["holders"], doc
    assert by["us-east"]["held"] and by["us-east"]["reason"] in ("origin", "demand",
                                                                 "min_regions"), doc
    second = [h for h in doc["holders"] if h != "us-east"][0]
    assert by[second]["reason"] in ("min_regions", "demand"), doc
    assert by["us-east"]["reads_per_day"] > 0, doc
    for name in REGIONS:
        if name not in doc["holders"]:
            assert by[name]["reason"] == "none" and not by[name]["held"], doc

    stats = json.loads(signer.request("GET", "/_tern/placement/stats").body)
    assert stats["region"] == "us-east" and stats["objects_tracked"] == 1, stats
    assert stats["events"] == 6, stats  # one PUT, five GETs
    # ternctl shows the same explanation.
    p = subprocess.run([ternlib.ternctl_binary(), "--endpoint", node.endpoint, "--access-key",
                        node.access_key, "--secret-key", node.secret_key, "placement", "explain",
                        f"media/{key}"], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    assert "us-east" in p.stdout and "yes" in p.stdout, p.stdout
    p = subprocess.run([ternlib.ternctl_binary(), "--endpoint", node.endpoint, "--access-key",
                        node.access_key, "--secret-key", node.secret_key, "-o", "json",
                        "placement", "stats"], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0 and json.loads(p.stdout)["events"] == 6, p.stdout + p.stderr
    # A delete ends the object's record.
    s3.delete_object(Bucket="media", Key=key)
    r = explain(signer, "media", key)
    assert r.status == 404 and r.s3_code == "NoSuchKey", r


def test_explain_errors(node, ternd_factory):
    signer = ternlib.Signer(node.hostport, node.access_key, node.secret_key)
    r = explain(signer, "nobucket", "nokey")
    assert r.status == 404 and r.s3_code == "NoSuchKey", r
    assert b"learns objects as this node serves" in r.body
    r = signer.request("GET", "/_tern/placement/explain", params=[("bucket", "b")])
    assert r.status == 400 and r.s3_code == "InvalidArgument", r
    plain = ternd_factory()
    signer = ternlib.Signer(plain.hostport, plain.access_key, plain.secret_key)
    r = signer.request("GET", "/_tern/placement/stats")
    assert r.status == 404 and r.s3_code == "NoTopology", r
