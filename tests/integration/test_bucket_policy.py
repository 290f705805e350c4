"""Bucket policies through /_tern/buckets/NAME/policy, and residency enforced on every write."""
import json
import subprocess

import pytest
from botocore.exceptions import ClientError

import ternlib


def policy(signer, method, bucket, doc=None):
    body = json.dumps(doc).encode() if doc is not None else b""
    return signer.request(method, f"/_tern/buckets/{bucket}/policy", body=body)


@pytest.fixture
def node(ternd_factory, tmp_path):
    """A node in region us-east of a three-region topology."""
    regions = ["us-east", "eu-west", "eu-central"]
    topology = tmp_path / "topology.json"
    topology.write_text(json.dumps({
        "regions": [{"name": r, "storage_usd_per_gb_month": 0.023} for r in regions],
        "egress_usd_per_gb": {a: {b: 0.02 for b in regions if b != a} for a in regions},
        "rtt_ms": {a: {b: 80 for b in regions if b != a} for a in regions}}))
    return ternd_factory(extra_args=["--topology", str(topology), "--region", "us-east"])


def test_policy_set_get_reset(node):
    s3 = node.client()
    s3.create_bucket(Bucket="docs")
    signer = ternlib.Signer(node.hostport, node.access_key, node.secret_key)
    r = policy(signer, "GET", "docs")
    assert r.status == 200, r
    assert json.loads(r.body) == {"bucket": "docs", "min_regions": 1, "allowed_regions": [],
                                  "pinned_regions": [], "rpo_seconds": 0, "rto_seconds": 0}
    r = policy(signer, "PUT", "docs", {"min_regions": 2, "allowed_regions": ["us-east", "eu-west"],
                                       "pinned_regions": ["us-east"], "rpo_seconds": 30})
    assert r.status == 200, r
    doc = json.loads(r.body)
    assert doc["min_regions"] == 2 and doc["allowed_regions"] == ["us-east", "eu-west"], doc
    # A later PUT merges: fields it does not name keep their values.
    r = policy(signer, "PUT", "docs", {"rto_seconds": 600})
    assert r.status == 200, r
    doc = json.loads(policy(signer, "GET", "docs").body)
    assert doc["rto_seconds"] == 600 and doc["rpo_seconds"] == 30 and doc["min_regions"] == 2
    assert doc["pinned_regions"] == ["us-east"], doc
    r = policy(signer, "DELETE", "docs")
    assert r.status == 204, r
    assert json.loads(policy(signer, "GET", "docs").body)["allowed_regions"] == []
    # Unsigned requests are refused like every admin request.
    status, _, _ = ternlib.http_request(node.hostport, "GET", "/_tern/buckets/docs/policy")
    assert status == 403


@pytest.mark.parametrize("doc,message", [
    ({"pinned_regions": ["eu-central"], "allowed_regions": ["us-east"]},
     "pinned_regions: eu-central is not in allowed_regions"),
    ({"allowed_regions": ["mars"]}, "allowed_regions: mars is not a region of the topology"),
    ({"min_regions": 4}, "min_regions: 4 is more than the 3 regions of the deployment"),
    ({"min_regions": 2, "allowed_regions": ["eu-west"]},
     "min_regions: 2 is more than the 1 allowed regions"),
    ({"min_regions": 0}, "min_regions: not an integer from 1 to 8"),
    ({"rpo_seconds": -1}, "rpo_seconds: not an integer number of seconds"),
    ({"allowed_regions": "eu-west"}, "allowed_regions: not an array"),
    ({"min_region": 2}, "min_region: unknown field"),
])
def test_invalid_policies_are_refused(node, doc, message):
    s3 = node.client()
    bucket = ternlib.unique_name("inv")
    s3.create_bucket(Bucket=bucket)
    signer = ternlib.Signer(node.hostport, node.access_key, node.secret_key)
    r = policy(signer, "PUT", bucket, doc)
    assert r.status == 400 and r.s3_code == "InvalidPolicy", r
    assert message.encode() in r.body, r.body
    # Nothing changed.
    assert json.loads(policy(signer, "GET", bucket).body)["min_regions"] == 1


def test_policy_errors(node):
    signer = ternlib.Signer(node.hostport, node.access_key, node.secret_key)
    r = policy(signer, "GET", "nosuchbucket")
    assert r.status == 404 and r.s3_code == "NoSuchBucket", r
    r = policy(signer, "PUT", "nosuchbucket", {"min_regions": 1})
    assert r.status == 404 and r.s3_code == "NoSuchBucket", r
    node.client().create_bucket(Bucket="jsonbad")
    r = signer.request("PUT", "/_tern/buckets/jsonbad/policy", body=b"{not json")
    assert r.status == 400 and r.s3_code == "MalformedJSON", r
    r = signer.request("PUT", "/_tern/buckets/jsonbad/policy", body=b"[1, 2]")
    assert r.status == 400 and r.s3_code == "MalformedJSON", r


def test_residency_refuses_writes_in_a_region_not_allowed(node):
    s3 = node.client()
    s3.create_bucket(Bucket="eu-only")
    s3.create_bucket(Bucket="anywhere")
    s3.put_object(Bucket="eu-only", Key="before", Body=b"written before the policy")
    s3.put_object(Bucket="anywhere", Key="src", Body=b"copy me")
    signer = ternlib.Signer(node.hostport, node.access_key, node.secret_key)
    r = policy(signer, "PUT", "eu-only", {"allowed_regions": ["eu-west", "eu-central"]})
    assert r.status == 200, r

    def refused(call):
        with pytest.raises(ClientError) as e:
            call()
        err = e.value.response
        assert err["Error"]["Code"] == "ResidencyViolation", err
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert "eu-west, eu-central" in err["Error"]["Message"], err
        assert "us-east" in err["Error"]["Message"], err

    refused(lambda: s3.put_object(Bucket="eu-only", Key="k", Body=b"x" * 1000))
    refused(lambda: s3.create_multipart_upload(Bucket="eu-only", Key="mp"))
    refused(lambda: s3.copy_object(Bucket="eu-only", Key="c",
                                   CopySource={"Bucket": "anywhere", "Key": "src"}))
    names = [o["Key"] for o in s3.list_objects_v2(Bucket="eu-only").get("Contents", [])]
    assert names == ["before"], names  # nothing refused was stored
    # Reads and deletes of what is there still work; a write elsewhere is unaffected.
    assert s3.get_object(Bucket="eu-only", Key="before")["Body"].read() == \
        b"written before the policy"
    s3.put_object(Bucket="anywhere", Key="ok", Body=b"fine")
    # Allowing this node's region lets writes in again.
    r = policy(signer, "PUT", "eu-only", {"allowed_regions": ["eu-west", "us-east"]})
    assert r.status == 200, r
    s3.put_object(Bucket="eu-only", Key="k", Body=b"now allowed")
    assert s3.get_object(Bucket="eu-only", Key="k")["Body"].read() == b"now allowed"


def test_residency_checked_again_at_multipart_completion(node):
    s3 = node.client()
    s3.create_bucket(Bucket="mp-eu")
    up = s3.create_multipart_upload(Bucket="mp-eu", Key="big")["UploadId"]
    part = s3.upload_part(Bucket="mp-eu", Key="big", UploadId=up, PartNumber=1, Body=b"p" * 100)
    signer = ternlib.Signer(node.hostport, node.access_key, node.secret_key)
    assert policy(signer, "PUT", "mp-eu", {"allowed_regions": ["eu-west"]}).status == 200
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket="mp-eu", Key="big", UploadId=up, PartNumber=2, Body=b"q" * 100)
    assert e.value.response["Error"]["Code"] == "ResidencyViolation"
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(
            Bucket="mp-eu", Key="big", UploadId=up,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert e.value.response["Error"]["Code"] == "ResidencyViolation"
    assert s3.list_objects_v2(Bucket="mp-eu").get("KeyCount") == 0


def test_ternctl_bucket_policy(node):
    """`ternctl bucket policy set|get|reset` against a real node."""

    def ternctl(*args):
        return subprocess.run([ternlib.ternctl_binary(), "--endpoint", node.endpoint,
                               "--access-key", node.access_key, "--secret-key", node.secret_key]
                              + list(args), capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)

    node.client().create_bucket(Bucket="cli-docs")
    p = ternctl("bucket", "policy", "set", "cli-docs", "--min-regions", "2", "--allowed",
                "eu-west,eu-central", "--pinned", "eu-west", "--rpo", "30s", "--rto", "10m")
    assert p.returncode == 0, p.stderr
    p = ternctl("-o", "json", "bucket", "policy", "get", "cli-docs")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc == {"bucket": "cli-docs", "min_regions": 2,
                   "allowed_regions": ["eu-west", "eu-central"], "pinned_regions": ["eu-west"],
                   "rpo_seconds": 30, "rto_seconds": 600}, doc
    p = ternctl("bucket", "policy", "set", "cli-docs", "--pinned", "us-east")
    assert p.returncode == 1
    assert "400 InvalidPolicy: pinned_regions: us-east is not in allowed_regions" in p.stderr
    p = ternctl("bucket", "policy", "reset", "cli-docs")
    assert p.returncode == 0, p.stderr
    p = ternctl("bucket", "policy", "get", "cli-docs")
    assert p.returncode == 0 and "all" in p.stdout, p.stdout
