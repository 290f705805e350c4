"""Process contract, /metrics (Prometheus, promtool), /_tern/status and `ternctl status`."""

import json
import os
import re
import signal
import shutil
import subprocess
import time

import pytest

import ternlib
from ternlib import MIB

REQUIRED_FAMILIES = {
    "tern_s3_requests_total": "counter",
    "tern_s3_request_duration_seconds": "histogram",
    "tern_s3_bytes_received_total": "counter",
    "tern_s3_bytes_sent_total": "counter",
    "tern_store_logical_bytes": "gauge",
    "tern_store_block_bytes": "gauge",
    "tern_store_disk_bytes": "gauge",
    "tern_store_objects": "gauge",
    "tern_store_dedup_ratio": "gauge",
    "tern_store_corruptions_total": "counter",
}


def status_json(server, secret=None):
    signer = ternlib.Signer(server.hostport, server.access_key, secret or server.secret_key)
    r = signer.request("GET", "/_tern/status")
    assert r.status == 200, r
    assert (r.header("Content-Type") or "").startswith("application/json"), r
    return json.loads(r.body)


def ternctl(*args, timeout_s=30):
    return subprocess.run([ternlib.ternctl_binary()] + list(args), capture_output=True,
                          text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)


def ternctl_auth(server, secret=None):
    return ["--endpoint", server.endpoint, "--access-key", server.access_key, "--secret-key",
            secret or server.secret_key]


# ---------------------------------------------------------------- process contract

def test_health_endpoints_and_listening_line(ternd):
    status, _, body = ternlib.http_request(ternd.hostport, "GET", "/readyz")
    assert status == 200 and body.strip() == b"ok", body
    status, _, body = ternlib.http_request(ternd.hostport, "GET", "/healthz")
    assert status == 200, body
    assert "listening" in ternd.log_text()


def test_generated_credentials_printed_and_usable(ternd_factory):
    server = ternd_factory(credentials=False)
    log = server.log_text()
    ak = re.search(r"root access key:\s*(\S+)", log)
    sk = re.search(r"root secret key:\s*(\S+)", log)
    assert ak and sk, log[-2000:]
    assert len(sk.group(1)) >= 8
    s3 = ternlib.s3_client(server.endpoint, ak.group(1), sk.group(1))
    assert s3.list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200
    bad = ternlib.s3_client(server.endpoint, ak.group(1), sk.group(1) + "x")
    with pytest.raises(Exception):
        bad.list_buckets()
    assert ak.group(1).startswith("AK"), f"generated access key {ak.group(1)!r} is not AK..."


def test_given_secret_not_logged(ternd):
    """Credentials given in the environment are not echoed to the log (only generated ones
    are printed, once, so the operator can learn them)."""
    assert ternd.secret_key not in ternd.log_text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_clean_shutdown_exit_zero_and_data_kept(ternd_factory, sig):
    server = ternd_factory(sync=True)
    s3 = server.client()
    s3.create_bucket(Bucket="keep")
    s3.put_object(Bucket="keep", Key="k", Body=b"durable")
    assert server.stop(sig) == 0, server.log_tail()
    server.start()
    assert server.client().get_object(Bucket="keep", Key="k")["Body"].read() == b"durable"


def _start_partial_put(server, bucket, key, data, sent_bytes):
    """Starts a PUT and returns once the server is surely working on it: it sends
    Expect: 100-continue and waits for the 100 (sent after auth and the bucket check),
    then sends sent_bytes of the body. Returns the connection and the unsent rest."""
    signer = ternlib.Signer(server.hostport, server.access_key, server.secret_key)
    path = ternlib.object_path(bucket, key)
    h = signer.headers("PUT", path, body=data, headers={"Expect": "100-continue"})
    conn = ternlib.RawConn(server.hostport, 15)
    conn.send(ternlib.build_request("PUT", path, "", h))
    interim = conn.read_response()
    assert interim.status == 100, interim
    conn.send(data[:sent_bytes])
    return conn, data[sent_bytes:]


def _readyz_status(server):
    try:
        return ternlib.http_request(server.hostport, "GET", "/readyz", timeout_s=2)[0]
    except (OSError, EOFError):
        return "refused"  # not accepting, or accepted and closed without an answer


def test_sigterm_drains_request_in_flight(ternd_factory):
    server = ternd_factory(sync=True)
    s3 = server.client()
    s3.create_bucket(Bucket="drain")
    data = ternlib.random_bytes(3 * MIB + 5)
    idle = ternlib.RawConn(server.hostport, 10)  # an idle keep-alive connection
    idle.send(ternlib.build_request("GET", "/healthz", "", {"Host": server.hostport}))
    assert idle.read_response().status == 200
    conn, rest = _start_partial_put(server, "drain", "inflight", data, MIB)
    server.proc.send_signal(signal.SIGTERM)
    # Draining: not ready any more (503), or no longer accepting at all.
    ternlib.wait_until(lambda: _readyz_status(server) in (503, "refused"), 10, 0.02,
                       "/readyz to stop answering 200 while draining")
    assert idle.closed_by_peer(5), "idle connections are closed at shutdown"
    idle.close()
    conn.send(rest)
    r = conn.read_response()
    conn.close()
    assert r.status == 200, r
    assert r.header("ETag") == f'"{ternlib.md5_hex(data)}"'
    server.proc.wait(timeout=30)
    assert server.proc.returncode == 0, server.log_tail()
    server.start()
    assert server.client().get_object(Bucket="drain", Key="inflight")["Body"].read() == data


def test_shutdown_grace_expiry_discards_upload(ternd_factory):
    server = ternd_factory(sync=True, extra_args=["--shutdown-grace-ms", "500"])
    s3 = server.client()
    s3.create_bucket(Bucket="grace")
    s3.put_object(Bucket="grace", Key="stalled", Body=b"previous version")
    data = ternlib.random_bytes(2 * MIB)
    conn, _ = _start_partial_put(server, "grace", "stalled", data, MIB // 2)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(timeout=20)
    took = time.monotonic() - started
    assert server.proc.returncode == 0, server.log_tail()
    assert took < 10, f"shutdown took {took:.1f}s with a 500 ms grace"
    assert conn.closed_by_peer(2)
    conn.close()
    server.start()
    got = server.client().get_object(Bucket="grace", Key="stalled")["Body"].read()
    assert got == b"previous version", "an upload cut by shutdown must not commit"


# ---------------------------------------------------------------- /metrics

def test_metrics_promtool_and_families(ternd):
    s3 = ternd.client()
    s3.create_bucket(Bucket="metrics-warmup")
    s3.put_object(Bucket="metrics-warmup", Key="k", Body=b"x")
    s3.get_object(Bucket="metrics-warmup", Key="k")["Body"].read()
    text, headers = ternlib.fetch_metrics(ternd.hostport)
    assert headers.get("content-type", "").startswith("text/plain"), headers
    promtool = ternlib.which_debian("promtool")
    p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, f"promtool: {p.stdout}{p.stderr}"
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    for name, kind in REQUIRED_FAMILIES.items():
        assert types.get(name) == kind, (name, types.get(name))
    samples = ternlib.parse_metrics(text)
    assert ternlib.metric(samples, "tern_s3_requests_total", op="PutObject", code="200") >= 1
    names = {n for n, _ in samples}
    for suffix in ("_bucket", "_sum", "_count"):
        assert "tern_s3_request_duration_seconds" + suffix in names


def test_metrics_unauthenticated_and_cheap(ternd):
    status, _, body = ternlib.http_request(ternd.hostport, "GET", "/metrics")
    assert status == 200
    assert b"tern_s3_requests_total" in body


def test_metrics_counters_increase(ternd):
    s3 = ternd.client()
    bucket = ternlib.unique_name("met")
    s3.create_bucket(Bucket=bucket)
    before = ternlib.parse_metrics(ternlib.fetch_metrics(ternd.hostport)[0])
    sizes = [1000, 200 * 1024, 3 * MIB]
    for i, size in enumerate(sizes):
        s3.put_object(Bucket=bucket, Key=f"m{i}", Body=ternlib.random_bytes(size))
    got = s3.get_object(Bucket=bucket, Key="m2")["Body"].read()
    assert len(got) == sizes[2]
    with pytest.raises(Exception):
        s3.get_object(Bucket=bucket, Key="absent")
    after = ternlib.parse_metrics(ternlib.fetch_metrics(ternd.hostport)[0])

    def delta(name, **labels):
        return ternlib.metric(after, name, **labels) - ternlib.metric(before, name, **labels)

    assert delta("tern_s3_requests_total", op="PutObject", code="200") == 3
    assert delta("tern_s3_requests_total", op="GetObject", code="200") == 1
    assert delta("tern_s3_requests_total", op="GetObject", code="404") == 1
    assert delta("tern_s3_request_duration_seconds_count", op="PutObject") == 3
    assert delta("tern_s3_request_duration_seconds_sum", op="PutObject") > 0
    assert delta("tern_s3_request_duration_seconds_bucket", op="PutObject", le="+Inf") == 3
    assert delta("tern_s3_bytes_received_total") >= sum(sizes)
    assert delta("tern_s3_bytes_sent_total") >= sizes[2]


def test_store_gauges_track_objects(ternd_factory):
    server = ternd_factory(sync=False)
    s3 = server.client()
    s3.create_bucket(Bucket="gauges")
    s3.put_object(Bucket="gauges", Key="a", Body=ternlib.random_bytes(1500))
    s3.put_object(Bucket="gauges", Key="b", Body=ternlib.random_bytes(2 * MIB))

    def settled():
        s = ternlib.parse_metrics(ternlib.fetch_metrics(server.hostport)[0])
        ok = (ternlib.metric(s, "tern_store_objects") == 2 and
              ternlib.metric(s, "tern_store_logical_bytes") == 1500 + 2 * MIB)
        return s if ok else None
    s = ternlib.wait_until(settled, 10, 0.1, "store gauges to show 2 objects")
    assert ternlib.metric(s, "tern_store_block_bytes") == 1500 + 2 * MIB
    assert ternlib.metric(s, "tern_store_disk_bytes") > 0
    assert ternlib.metric(s, "tern_store_corruptions_total") == 0


# ---------------------------------------------------------------- /_tern/status

def test_status_json_fields_and_values(ternd_factory):
    server = ternd_factory(sync=False)
    s3 = server.client()
    s3.create_bucket(Bucket="st1")
    s3.create_bucket(Bucket="st2")
    same = ternlib.random_bytes(2 * MIB, seed=42)  # stored twice: deduplicated blocks
    s3.put_object(Bucket="st1", Key="a", Body=same)
    s3.put_object(Bucket="st2", Key="b", Body=same)
    s3.put_object(Bucket="st2", Key="c", Body=b"tiny")

    def settled():
        st = status_json(server)
        return st if st["storage"]["objects"] == 3 else None
    st = ternlib.wait_until(settled, 10, 0.1, "status to show 3 objects")
    assert st["node_id"] == 1
    assert st["region"] == "local"
    assert st["version"] == "0.1.0"
    assert isinstance(st["uptime_seconds"], (int, float)) and 0 <= st["uptime_seconds"] < 600
    assert st["s3_listen"] == server.hostport
    assert os.path.realpath(st["data_dir"]) == os.path.realpath(server.data_dir)
    storage = st["storage"]
    for field in ("buckets", "objects", "logical_bytes", "blocks", "block_bytes",
                  "referenced_block_bytes", "dedup_ratio", "disk_bytes", "corruptions"):
        assert field in storage, field
    assert storage["buckets"] == 2
    assert storage["logical_bytes"] == 4 * MIB + 4
    assert storage["blocks"] == 3  # two distinct 1 MiB blocks + "tiny"
    assert storage["block_bytes"] == 2 * MIB + 4
    assert storage["referenced_block_bytes"] == 4 * MIB + 4
    assert abs(storage["dedup_ratio"] - (4 * MIB + 4) / (2 * MIB + 4)) < 0.01
    assert storage["disk_bytes"] > 0
    assert storage["corruptions"] == 0

    s3.delete_object(Bucket="st2", Key="b")
    st = ternlib.wait_until(lambda: (lambda x: x if x["storage"]["objects"] == 2 else None)(
        status_json(server)), 10, 0.1, "status to show 2 objects")
    assert st["storage"]["logical_bytes"] == 2 * MIB + 4
    assert st["storage"]["referenced_block_bytes"] == 2 * MIB + 4


def test_status_requires_valid_signature(ternd):
    status, _, body = ternlib.http_request(ternd.hostport, "GET", "/_tern/status")
    assert status == 403, body
    signer = ternlib.Signer(ternd.hostport, ternd.access_key, "not-the-secret")
    r = signer.request("GET", "/_tern/status")
    assert r.status == 403 and r.s3_code == "SignatureDoesNotMatch", r


def test_egress_without_topology(ternd):
    """A node without a topology accounts no egress: /_tern/egress says so with a 404 (still
    behind SigV4), /metrics has no tern_egress_ family, and `ternctl egress` explains it."""
    status, _, body = ternlib.http_request(ternd.hostport, "GET", "/_tern/egress")
    assert status == 403, body
    signer = ternlib.Signer(ternd.hostport, ternd.access_key, ternd.secret_key)
    r = signer.request("GET", "/_tern/egress")
    assert r.status == 404 and r.s3_code == "NoTopology", r
    assert b"no topology configured" in r.body, r.body
    text, _ = ternlib.fetch_metrics(ternd.hostport)
    assert "tern_egress_" not in text
    p = ternctl(*ternctl_auth(ternd), "egress")
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert p.stdout == ""
    assert "has no topology configured" in p.stderr and "404 NoTopology" in p.stderr, p.stderr


def test_egress_with_topology(ternd_factory, tmp_path):
    """With --topology the node accounts egress: /_tern/egress and `ternctl egress` answer
    (zeros until regions exchange data), /metrics has the families and promtool accepts them,
    and a region the topology lacks stops ternd at start with the reason."""
    topology = tmp_path / "topology.json"
    topology.write_text(json.dumps({
        "regions": [{"name": "us-east", "storage_usd_per_gb_month": 0.023},
                    {"name": "eu-west", "storage_usd_per_gb_month": 0.023}],
        "egress_usd_per_gb": {"us-east": {"eu-west": 0.02}, "eu-west": {"us-east": 0.02}},
        "rtt_ms": {"us-east": {"eu-west": 75}, "eu-west": {"us-east": 75}},
        "buckets": {"*": {"min_regions": 2}}}))
    server = ternd_factory(extra_args=["--topology", str(topology), "--region", "eu-west"])
    signer = ternlib.Signer(server.hostport, server.access_key, server.secret_key)
    r = signer.request("GET", "/_tern/egress")
    assert r.status == 200, r
    doc = json.loads(r.body)
    assert doc["local_region"] == "eu-west" and doc["total"]["usd"] == 0, doc
    assert doc["full_replication"]["usd"] == 0, doc
    text, _ = ternlib.fetch_metrics(server.hostport)
    assert 'tern_egress_bytes_total{from="us-east",to="eu-west",cause="replication"} 0' in text
    promtool = shutil.which("promtool")
    if promtool:
        p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 0, p.stdout + p.stderr
    p = ternctl(*ternctl_auth(server), "egress", "-o", "json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["total"]["bytes"] == 0

    bad = ternd_factory(extra_args=["--topology", str(topology), "--region", "ap-south"],
                        start=False)
    bad.port = ternlib.free_port()
    p = subprocess.run(bad._argv(), capture_output=True, text=True, timeout=30,
                       env=bad._env(), stdin=subprocess.DEVNULL)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "region 'ap-south' is not in topology" in p.stderr, p.stderr


# ---------------------------------------------------------------- ternctl

def test_ternctl_status_table_and_json(ternd):
    s3 = ternd.client()
    bucket = ternlib.unique_name("ctl")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="x", Body=b"12345")
    expected = status_json(ternd)

    p = ternctl(*ternctl_auth(ternd), "status")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "node" in out.lower() and "local" in out and "0.1.0" in out, out
    assert str(expected["storage"]["objects"]) in out, out

    p = ternctl(*ternctl_auth(ternd), "status", "-o", "json")
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    for field in ("node_id", "region", "version", "s3_listen", "data_dir"):
        assert got[field] == expected[field], field
    for field in ("buckets", "objects", "logical_bytes", "blocks", "block_bytes"):
        assert got["storage"][field] == expected["storage"][field], field


def test_ternctl_wrong_secret(ternd):
    p = ternctl(*ternctl_auth(ternd, secret="definitely-wrong-secret"), "status")
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    msg = p.stderr.lower()
    assert any(w in msg for w in ("signature", "credential", "denied", "403", "refused",
                                  "authenticat")), p.stderr


def test_ternctl_closed_port():
    port = ternlib.free_port()  # nothing listens there
    p = ternctl("--endpoint", f"http://127.0.0.1:{port}", "--access-key", "AKX",
                "--secret-key", "secretsecret", "status")
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    msg = p.stderr.lower()
    assert p.stderr.strip(), "ternctl must say why it failed"
    assert any(w in msg for w in ("connect", "refused", "unreachable", "127.0.0.1")), p.stderr
