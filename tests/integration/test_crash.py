"""Crash consistency: SIGKILL ternd (sync on) during concurrent writes, restart, verify.

Writers PUT new keys of random sizes (some span several 1 MiB blocks), overwrite and delete
keys they wrote in earlier cycles, and one writer runs multipart uploads. Each key has one
owner thread, so its versions form a sequence; the ledger records every version sent and
the last one acknowledged. After every restart:
  1. a key whose last acknowledged write was a PUT reads back as that version or a later
     one that was in flight (an acknowledged write is never lost or rolled back);
  2. a key whose last acknowledged write was a DELETE is absent or holds a later in-flight
     version;
  3. every listed object has exactly the content of some version sent in full (no partial or
     torn object), its listed size matches, and no key appears that was never written;
  4. the store's object count and logical bytes (GET /_tern/status) match the listing.
The kill points are random (seeded; TERN_CRASH_SEED=N replays the same choices).
"""

import hashlib
import json
import os
import random
import threading
import time

from botocore.exceptions import BotoCoreError, ClientError

import pytest

import ternlib
from ternlib import MIB

CYCLES = 3
WRITERS = 6
ACKS_BEFORE_KILL = (8, 40)   # per cycle: kill after a random number in this range of new acks
CYCLE_TIMEOUT_S = 60.0
MAX_OPS_PER_WRITER = 200     # bounds each writer even if the kill never comes
SIZES = [0, 1, 4096, 100 * 1024, MIB - 1, MIB, MIB + 1, 2 * MIB + 12345, 3 * MIB + 7]
DELETED = None


class Ledger:
    """Per key: the versions sent in order (sha256 and size, or DELETED) and the index of
    the last acknowledged one."""

    def __init__(self):
        self.lock = threading.Lock()
        self.versions = {}
        self.acked = {}
        self.new_acks = 0

    def sent(self, key, data):
        with self.lock:
            v = DELETED if data is None else (hashlib.sha256(data).hexdigest(), len(data))
            self.versions.setdefault(key, []).append(v)
            return len(self.versions[key]) - 1

    def ack(self, key, index):
        with self.lock:
            self.acked[key] = index
            self.new_acks += 1

    def ack_count(self):
        with self.lock:
            return self.new_acks

    def allowed(self, key):
        """The states the key may be in after a crash: version tuples and/or DELETED."""
        versions = self.versions[key]
        if key in self.acked:
            return versions[self.acked[key]:]
        return [DELETED] + versions


def writer(client, bucket, prefix, own_old_keys, seed, ledger, stop):
    rng = random.Random(seed)
    for i in range(MAX_OPS_PER_WRITER):
        if stop.is_set():
            return
        roll = rng.random()
        try:
            if own_old_keys and roll < 0.15:
                key = rng.choice(own_old_keys)
                index = ledger.sent(key, None)
                client.delete_object(Bucket=bucket, Key=key)
            else:
                if own_old_keys and roll < 0.40:
                    key = rng.choice(own_old_keys)
                else:
                    key = f"{prefix}/{i:04d}"
                data = rng.randbytes(rng.choice(SIZES))
                index = ledger.sent(key, data)
                client.put_object(Bucket=bucket, Key=key, Body=data)
        except (BotoCoreError, ClientError, OSError):
            return  # the server died under us: this write is unacknowledged
        ledger.ack(key, index)


def multipart_writer(client, bucket, prefix, seed, ledger, stop):
    rng = random.Random(seed)
    for i in range(MAX_OPS_PER_WRITER):
        if stop.is_set():
            return
        key = f"{prefix}/{i:04d}"
        parts = [rng.randbytes(5 * MIB), rng.randbytes(rng.randint(1, 2 * MIB))]
        index = ledger.sent(key, b"".join(parts))
        try:
            uid = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
            etags = []
            for n, p in enumerate(parts, start=1):
                etags.append(client.upload_part(Bucket=bucket, Key=key, UploadId=uid,
                                                PartNumber=n, Body=p)["ETag"])
            client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=uid,
                MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": e}
                                           for n, e in enumerate(etags)]})
        except (BotoCoreError, ClientError, OSError):
            return
        ledger.ack(key, index)


def list_all(client, bucket):
    out = {}
    token = None
    for _ in range(1000):
        kw = {"Bucket": bucket}
        if token:
            kw["ContinuationToken"] = token
        r = client.list_objects_v2(**kw)
        for o in r.get("Contents", []):
            out[o["Key"]] = (o["Size"], o["ETag"])
        if not r["IsTruncated"]:
            return out
        token = r["NextContinuationToken"]
    raise AssertionError("listing did not terminate")


def verify(server, bucket, ledger, seed):
    client = server.client()
    listed = list_all(client, bucket)
    for key in listed:
        assert key in ledger.versions, f"{key} listed but never written (seed {seed})"
    total = 0
    for key in sorted(ledger.versions):
        allowed = ledger.allowed(key)
        if key not in listed:
            assert DELETED in allowed, \
                f"{key} lost: allowed states {allowed}, last acked index " \
                f"{ledger.acked.get(key)} (seed {seed})"
            continue
        size, etag = listed[key]
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        state = (hashlib.sha256(body).hexdigest(), len(body))
        assert state in allowed, \
            f"{key}: content ({len(body)} bytes) is not an allowed version; acked index " \
            f"{ledger.acked.get(key)} of {len(ledger.versions[key])} (seed {seed})"
        assert size == len(body), f"{key}: listed size {size}, read {len(body)}"
        if "-" not in etag.strip('"'):
            assert etag.strip('"') == hashlib.md5(body).hexdigest(), f"{key}: ETag {etag}"
        total += size
    st = ternlib.Signer(server.hostport, server.access_key, server.secret_key).request(
        "GET", "/_tern/status")
    assert st.status == 200, st
    storage = json.loads(st.body)["storage"]
    assert storage["objects"] == len(listed), (storage, len(listed))
    assert storage["logical_bytes"] == total, (storage, total)
    return listed


def test_sigkill_during_writes(ternd_factory):
    server = ternd_factory(sync=True)
    bucket = "crash"
    server.client().create_bucket(Bucket=bucket)
    ledger = Ledger()
    started = time.monotonic()
    seed = int(os.environ.get("TERN_CRASH_SEED") or random.SystemRandom().randrange(1 << 30))
    print(f"crash test seed {seed} (TERN_CRASH_SEED={seed} replays the kill points)")
    rng = random.Random(seed)
    for cycle in range(CYCLES):
        ledger.new_acks = 0
        acks_before_kill = rng.randint(*ACKS_BEFORE_KILL)
        stop = threading.Event()
        threads = []
        for w in range(WRITERS + 1):
            client = server.client(max_pool_connections=2, read_timeout=30)
            if w < WRITERS:
                own = sorted(k for k in ledger.versions
                             if k.split("/")[1] == f"w{w}" and not k.startswith(f"c{cycle}/"))
                args = (client, bucket, f"c{cycle}/w{w}", own, seed + cycle * 100 + w, ledger,
                        stop)
                fn = writer
            else:
                args = (client, bucket, f"c{cycle}/mp", seed + cycle * 100 + w, ledger, stop)
                fn = multipart_writer
            t = threading.Thread(target=fn, args=args, daemon=True)
            t.start()
            threads.append(t)
        # Kill once enough writes of this cycle were acknowledged (more are in flight).
        ternlib.wait_until(lambda: ledger.ack_count() >= acks_before_kill, CYCLE_TIMEOUT_S,
                           0.005, f"{acks_before_kill} acknowledged writes in cycle {cycle} "
                           f"(seed {seed})")
        server.kill()
        stop.set()
        for t in threads:
            t.join(timeout=60)
            assert not t.is_alive(), "writer thread did not finish after the kill"
        server.start(port=server.port, ready_timeout_s=60)
        listed = verify(server, bucket, ledger, seed)
        unacked = sum(1 for k, v in ledger.versions.items()
                      if ledger.acked.get(k, -1) < len(v) - 1)
        print(f"cycle {cycle}: killed after {acks_before_kill} new acks; keys "
              f"{len(ledger.versions)}, with unacknowledged writes {unacked}, listed "
              f"{len(listed)}, elapsed {time.monotonic() - started:.1f}s")
    # Multipart uploads cut by a crash are only listed as uploads (never as objects), and
    # aborting them works.
    client = server.client()
    for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# ---------------------------------------------------------------- on-disk corruption

def _flip_byte_of(data_dir, needle, offset_in_needle):
    """Finds needle in a file of data_dir and flips one byte of it; returns the file name."""
    for name in sorted(os.listdir(data_dir)):
        path = os.path.join(data_dir, name)
        if not os.path.isfile(path) or os.path.getsize(path) < len(needle):
            continue
        with open(path, "rb") as f:
            content = f.read()
        at = content.find(needle)
        if at >= 0:
            with open(path, "r+b") as f:
                f.seek(at + offset_in_needle)
                f.write(bytes([content[at + offset_in_needle] ^ 0x5A]))
            return name
    return None


def test_corrupted_block_is_never_served(ternd_factory):
    """A byte flipped on disk inside an object's second block: GETs must not return the bad
    byte (500 before the body, or a connection cut short of it), corruption is counted, and
    other blocks and objects still read."""
    server = ternd_factory(sync=True, extra_args=["--scrub-rate", "0"])
    s3 = server.client()
    s3.create_bucket(Bucket="rot")
    data = ternlib.random_bytes(3 * MIB, seed=1234)
    other = ternlib.random_bytes(200 * 1024, seed=4321)
    s3.put_object(Bucket="rot", Key="victim", Body=data)
    s3.put_object(Bucket="rot", Key="other", Body=other)
    assert server.stop() == 0, server.log_tail()  # clean stop: blocks flushed to their files
    needle = data[MIB + 4096:MIB + 4096 + 64]
    corrupted_file = _flip_byte_of(server.data_dir, needle, 10)
    assert corrupted_file, "the block's bytes were not found in the data dir"
    bad_offset = MIB + 4096 + 10
    server.start()

    signer = ternlib.Signer(server.hostport, server.access_key, server.secret_key)
    with ternlib.RawConn(server.hostport, 15) as c:
        c.send(signer.raw("GET", ternlib.object_path("rot", "victim")))
        try:
            r = c.read_response()
            got, status = r.body, r.status
        except EOFError:
            got, status = c.buf, "cut"
    # Either 500 before any body byte, or a body cut short before the corrupted byte.
    assert status in (500, "cut"), f"status {status} with {len(got)} body bytes"
    if status == "cut":
        assert len(got) <= bad_offset, f"{len(got)} bytes served, past the corrupted byte"
        assert data.startswith(got), "the bytes served before the cut are not the object's"
    # Block 0 and other objects are fine.
    r = s3.get_object(Bucket="rot", Key="victim", Range="bytes=0-1000")
    assert r["Body"].read() == data[:1001]
    assert s3.get_object(Bucket="rot", Key="other")["Body"].read() == other
    samples = ternlib.parse_metrics(ternlib.fetch_metrics(server.hostport)[0])
    assert ternlib.metric(samples, "tern_store_corruptions_total") >= 1

    # The scrubber finds the corruption on its own (no client read), after a restart.
    assert server.stop() == 0, server.log_tail()
    server.extra_args = ["--scrub-rate", "256M"]
    server.start()

    def scrub_found():
        s = ternlib.parse_metrics(ternlib.fetch_metrics(server.hostport)[0])
        return ternlib.metric(s, "tern_store_corruptions_total") >= 1
    ternlib.wait_until(scrub_found, 20, 0.1, "the scrubber to count the corrupted block")
    assert server.client().get_object(Bucket="rot", Key="other")["Body"].read() == other


def test_scrubber_finds_every_corrupted_block(ternd_factory):
    """Two blocks corrupted on disk, no client reads them: the scrubber alone must find both
    (it must not stop or loop at the first one)."""
    server = ternd_factory(sync=True, extra_args=["--scrub-rate", "0"])
    s3 = server.client()
    s3.create_bucket(Bucket="scrub")
    objects = {f"o{i}": ternlib.random_bytes(MIB, seed=500 + i) for i in range(6)}
    for key, data in objects.items():
        s3.put_object(Bucket="scrub", Key=key, Body=data)
    assert server.stop() == 0, server.log_tail()
    for key in ("o1", "o4"):
        assert _flip_byte_of(server.data_dir, objects[key][5000:5064], 3), key
    server.extra_args = ["--scrub-rate", "256M"]
    server.start()

    def found():
        s = ternlib.parse_metrics(ternlib.fetch_metrics(server.hostport)[0])
        n = ternlib.metric(s, "tern_store_corruptions_total")
        return n if n >= 2 else None
    ternlib.wait_until(found, 20, 0.1, "the scrubber to find both corrupted blocks")
    client = server.client()
    for key in ("o0", "o2", "o3", "o5"):
        assert client.get_object(Bucket="scrub", Key=key)["Body"].read() == objects[key]
    for key in ("o1", "o4"):
        with pytest.raises(ClientError) as ei:
            client.get_object(Bucket="scrub", Key=key)["Body"].read()
        assert ternlib.http_status(ei.value) == 500, ei.value.response
