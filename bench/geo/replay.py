#!/usr/bin/python3
"""Driver of the geo-replication benchmark (bench/geo/run.sh): trace preparation, topologies,
proxy control, the live replay against three regions, and the summary against `ternctl sim`.

Subcommands (run.sh calls them in this order; each prints what it wrote):

  prepare    --in RAW.csv --out TRACE.csv --budget BYTES [--scale S] --info INFO.json
             Scales every PUT and GET size by 1/S (ceil, at least 1 byte; DELETEs keep 0) so
             that the trace's PUT + GET bytes stay under --budget, and writes the scaled trace:
             the simulator and the live replay read that same file. Every term of the cost
             model is proportional to bytes and the engine decides per GB, so scaling changes
             dollar figures by 1/S and neither policy's decisions nor any ratio.
  ports      N: prints N free TCP ports on 127.0.0.1.
  topology   --base T.json --ports PORTS.json --out-dir DIR
             Writes DIR/topology-sim.json (the base: no endpoints) and one
             DIR/topology-REGION.json per region, identical except for s3_endpoints: the
             region's own endpoint is its real port, every other region's is the proxy route
             "REGION>OTHER", which forwards to OTHER's real port. Prints the proxy routes.
  proxy      --control HOST:PORT CMD...   sends control lines to tcpproxy, prints the replies.
  replay     the live replay (see Replay below); writes live.json.
  summarize  --live live.json --sim sim.json --info INFO.json --out-dir DIR
             Writes DIR/summary.json and DIR/summary.txt, prints the table.

Replay: the trace's events in time order, event at trace time ts run at wall time
t0 + (ts - ts_first) / TIME_SCALE (ternd runs with --placement-time-scale TIME_SCALE, so its
engine sees the trace's timeline), by --threads workers; all events of one key go to the same
worker, in order. A PUT writes `bytes` random bytes (new content per version: dedup cannot
skew anything); a GET reads the object from the event's region and checks the bytes against
every version written; a DELETE deletes the object if the trace says it exists. Meanwhile a
prober writes a small marker object every --lag-interval s in one region (in turn, bucket
geo-lag) and times until both other regions serve it. After the replay a marker per region is
waited for everywhere (the shipper sends each region's log in order, so every earlier write
has been shipped), then the egress counters are read again. Live figures are the change of
GET /_tern/egress on every region between before the replay and after that settle.
"""
import argparse
import csv
import hashlib
import json
import math
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib

try:
    import boto3
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.config import Config
    from botocore.credentials import Credentials
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # only replay needs them
    boto3 = None

HEADER = "ts_ms,region,op,bucket,key,bytes"
LAG_BUCKET = "geo-lag"


def pct(values, q):
    """Nearest-rank percentile (as ternctl sim computes them); None if empty."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def read_trace(path):
    with open(path, newline="") as f:
        first = f.readline().strip()
        if first != HEADER:
            sys.exit(f"replay: {path}: header is not {HEADER!r}")
        rows = []
        for line in f:
            line = line.strip()
            if not line:
                continue
            ts, region, op, bucket, key, nbytes = line.split(",")
            rows.append((int(ts), region, op, bucket, key, int(nbytes)))
    return rows


# ---------------------------------------------------------------- prepare

def cmd_prepare(a):
    rows = read_trace(a.inp)
    raw_put = sum(r[5] for r in rows if r[2] == "PUT")
    raw_get = sum(r[5] for r in rows if r[2] == "GET")
    scale = a.scale if a.scale else max(1, math.ceil((raw_put + raw_get) / a.budget))
    sc = lambda n: n if n == 0 else max(1, -(-n // scale))
    out = [(ts, reg, op, b, k, sc(n) if op in ("PUT", "GET") else n)
           for ts, reg, op, b, k, n in rows]
    with open(a.out, "w") as f:
        f.write(HEADER + "\n")
        for r in out:
            f.write(",".join(map(str, r)) + "\n")
    sizes = {}
    for r in out:
        if r[2] == "PUT":
            sizes[(r[3], r[4])] = r[5]
    ops = {op: sum(1 for r in out if r[2] == op) for op in ("PUT", "GET", "DELETE")}
    info = {
        "raw_trace": os.path.abspath(a.inp), "trace": os.path.abspath(a.out),
        "size_scale": scale, "events": len(out), "ops": ops, "objects": len(sizes),
        "raw_put_bytes": raw_put, "raw_get_bytes": raw_get,
        "put_bytes": sum(r[5] for r in out if r[2] == "PUT"),
        "get_bytes": sum(r[5] for r in out if r[2] == "GET"),
        "max_object_bytes": max(sizes.values()) if sizes else 0,
        "raw_max_object_bytes": max((r[5] for r in rows if r[2] == "PUT"), default=0),
        "first_ts_ms": out[0][0] if out else 0, "last_ts_ms": out[-1][0] if out else 0,
        "span_ms": (out[-1][0] - out[0][0]) if out else 0,
        "regions": sorted({r[1] for r in out}),
    }
    with open(a.info, "w") as f:
        json.dump(info, f, indent=2)
    print(json.dumps(info))


# ---------------------------------------------------------------- ports, topology, proxy

def cmd_ports(a):
    socks, ports = [], []
    for _ in range(a.n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    print(" ".join(map(str, ports)))


def cmd_topology(a):
    """ports.json: {"s3": {region: port}, "routes": {"A>B": port}}"""
    base = json.load(open(a.base))
    ports = json.load(open(a.ports))
    names = [r["name"] for r in base["regions"]]
    sim = json.loads(json.dumps(base))
    for r in sim["regions"]:
        r.pop("s3_endpoints", None)
        r.pop("peer_endpoints", None)
    with open(os.path.join(a.out_dir, "topology-sim.json"), "w") as f:
        json.dump(sim, f, indent=2)
    for me in names:
        t = json.loads(json.dumps(sim))
        for r in t["regions"]:
            n = r["name"]
            port = ports["s3"][n] if n == me else ports["routes"][f"{me}>{n}"]
            r["s3_endpoints"] = [f"http://127.0.0.1:{port}"]
        with open(os.path.join(a.out_dir, f"topology-{me}.json"), "w") as f:
            json.dump(t, f, indent=2)
    # One route per ordered pair: A's requests to B (and B's answers) cross it.
    for src in names:
        for dst in names:
            if src != dst:
                rtt = base["rtt_ms"][src][dst]
                print(f"{src}>{dst} {ports['routes'][f'{src}>{dst}']} {ports['s3'][dst]} {rtt}")


def proxy_send(control, lines):
    host, port = control.rsplit(":", 1)
    replies = []
    with socket.create_connection((host, int(port)), timeout=5) as s:
        f = s.makefile("rw", newline="\n")
        for line in lines:
            f.write(line + "\n")
            f.flush()
            replies.append(f.readline().strip())
    return replies


def cmd_proxy(a):
    replies = proxy_send(a.control, a.lines)
    bad = False
    for line, reply in zip(a.lines, replies):
        print(f"{line} -> {reply}")
        bad |= not reply.startswith("ok")
    sys.exit(1 if bad else 0)


# ---------------------------------------------------------------- admin API

def signed_get(endpoint, path, ak, sk, timeout=10.0):
    req = AWSRequest(method="GET", url=endpoint + path)
    S3SigV4Auth(Credentials(ak, sk), "s3", "us-east-1").add_auth(req)
    prepared = req.prepare()
    r = urllib.request.Request(prepared.url, headers=dict(prepared.headers), method="GET")
    try:
        with urllib.request.urlopen(r, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def admin_json(endpoint, path, ak, sk):
    status, body = signed_get(endpoint, path, ak, sk)
    if status != 200:
        return {"error": f"HTTP {status}", "body": body.decode("utf-8", "replace")[:300]}
    return json.loads(body)


# ---------------------------------------------------------------- replay

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = {k: 0 for k in ("puts", "put_bytes", "gets", "get_bytes", "deletes",
                                 "trace_misses", "replication_misses", "stale_reads",
                                 "wrong_bytes", "errors", "unexpected_hits")}
        self.read_ms = []
        self.late_s = []
        self.read_ms_by_region = {}
        self.read_log = []  # (start s, region, (bucket, key), version, ttfb ms, ms, bytes) per verified GET
        self.last_error = ""
        self.errors_by_kind = {}

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                self.c[k] += v

    def error(self, what):
        with self.lock:
            self.c["errors"] += 1
            self.last_error = what
            kind = what.split(":")[0][:60]
            self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1


def describe(exc):
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', '?')}: {err.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"


def not_found(exc):
    return isinstance(exc, ClientError) and (
        exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"))


def make_clients(endpoints, ak, sk, pool):
    cfg = Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                 retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5,
                 read_timeout=60, max_pool_connections=pool)
    session = boto3.session.Session()
    return {n: session.client("s3", endpoint_url=e, region_name="us-east-1",
                              aws_access_key_id=ak, aws_secret_access_key=sk, config=cfg)
            for n, e in endpoints.items()}


def create_bucket(clients, names, bucket, timeout=60):
    first = clients[names[0]]
    try:
        first.create_bucket(Bucket=bucket)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou",
                                                           "BucketAlreadyExists"):
            raise
    deadline = time.monotonic() + timeout
    for n in names:
        while True:
            try:
                clients[n].head_bucket(Bucket=bucket)
                break
            except (ClientError, BotoCoreError):
                if time.monotonic() > deadline:
                    sys.exit(f"replay: bucket {bucket} did not reach {n} within {timeout}s")
                time.sleep(0.1)


def wait_visible(clients, bucket, key, body, regions, t0, timeout, stop=None):
    """Seconds from t0 until every region serves key with body; None on timeout."""
    pending = set(regions)
    while pending:
        if time.monotonic() - t0 > timeout or (stop is not None and stop.is_set()):
            return None
        for r in list(pending):
            try:
                got = clients[r].get_object(Bucket=bucket, Key=key)
                if got["Body"].read() == body:
                    pending.discard(r)
            except (ClientError, BotoCoreError, OSError):
                pass
        if pending:
            time.sleep(min(0.05, 0.01 + 0.05 * (time.monotonic() - t0)))
    return time.monotonic() - t0


class Replay:
    def __init__(self, a, rows, names):
        self.a = a
        self.rows = rows
        self.names = names
        self.stats = Stats()
        self.versions = {}  # (bucket, key) -> [digest of each version written]
        self.exists = {}    # (bucket, key) -> the trace says it exists now
        self.stop = threading.Event()
        self.lags = []
        self.lag_timeouts = 0
        self.lag_samples = []  # (seconds since the replay's start, src, lag seconds or None)
        self.t0 = 0.0

    def run_event(self, clients, ev):
        ts, region, op, bucket, key, nbytes = ev
        s3 = clients[region]
        k = (bucket, key)
        st = self.stats
        try:
            if op == "PUT":
                body = os.urandom(nbytes)
                s3.put_object(Bucket=bucket, Key=key, Body=body)
                self.versions.setdefault(k, []).append(hashlib.blake2b(body, digest_size=16).digest())
                self.exists[k] = True
                st.add(puts=1, put_bytes=nbytes)
            elif op == "GET":
                t = time.monotonic()
                try:
                    got = s3.get_object(Bucket=bucket, Key=key)
                    ttfb = (time.monotonic() - t) * 1000.0  # headers come with the first block
                    data = got["Body"].read()
                except ClientError as e:
                    if not not_found(e):
                        raise
                    if self.exists.get(k):
                        st.add(replication_misses=1)  # written elsewhere, not here yet
                    else:
                        st.add(trace_misses=1)  # the simulator's missed read too
                    return
                ms = (time.monotonic() - t) * 1000.0
                d = hashlib.blake2b(data, digest_size=16).digest()
                vs = self.versions.get(k, [])
                if not self.exists.get(k):
                    st.add(unexpected_hits=1)  # deleted in the trace, the delete not here yet
                elif vs and d == vs[-1]:
                    with st.lock:
                        st.c["gets"] += 1
                        st.c["get_bytes"] += len(data)
                        st.read_ms.append(ms)
                        st.read_ms_by_region.setdefault(region, []).append(ms)
                        st.read_log.append((t - self.t0, region, k, len(vs) - 1, ttfb, ms,
                                            len(data)))
                elif d in vs:
                    st.add(stale_reads=1)  # an older version: the overwrite not here yet
                else:
                    st.add(wrong_bytes=1)
                    st.error(f"wrong bytes: {region} {bucket}/{key} ({len(data)} bytes)")
            elif op == "DELETE":
                if self.exists.get(k):
                    s3.delete_object(Bucket=bucket, Key=key)
                    self.exists[k] = False
                    st.add(deletes=1)
        except (ClientError, BotoCoreError, OSError) as e:
            st.error(f"{op} {region}: {describe(e)}")

    def worker(self, events, t0, ts0, clients):
        scale = self.a.time_scale
        late = []
        for ev in events:
            if self.stop.is_set():
                break
            due = t0 + (ev[0] - ts0) / scale / 1000.0
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            else:
                late.append(now - due)
            self.run_event(clients, ev)
        with self.stats.lock:
            self.stats.late_s.extend(late)

    def prober(self, clients):
        seq = 0
        n = len(self.names)
        while not self.stop.wait(self.a.lag_interval if seq else 0.5):
            src = self.names[seq % n]
            key = f"m{seq:05d}-{src}"
            body = f"marker {seq} {time.time():.6f}".encode()
            seq += 1
            try:
                clients[src].put_object(Bucket=LAG_BUCKET, Key=key, Body=body)
            except (ClientError, BotoCoreError, OSError) as e:
                self.stats.error(f"lag marker {src}: {describe(e)}")
                continue
            t0 = time.monotonic()
            lag = wait_visible(clients, LAG_BUCKET, key, body, [r for r in self.names if r != src],
                               t0, self.a.lag_timeout, self.stop)
            if lag is None and self.stop.is_set():
                break  # cut short by the end of the replay: not a sample
            self.lag_samples.append((round(t0 - self.t0, 3), src, lag))
            if lag is None:
                self.lag_timeouts += 1
            else:
                self.lags.append(lag)


def egress_delta(before, after):
    """Sum over regions of (after - before) of the additive figures of GET /_tern/egress."""
    tot = {"usd": 0.0, "bytes": 0, "replication_usd": 0.0, "replication_bytes": 0,
           "remote_read_usd": 0.0, "remote_read_bytes": 0, "repair_usd": 0.0, "repair_bytes": 0,
           "full_usd": 0.0, "read_bytes": 0, "reads": 0, "written_bytes": 0, "writes": 0}
    flows, per_region = {}, {}
    for region, a in after.items():
        b = before[region]
        d = {
            "usd": a["total"]["usd"] - b["total"]["usd"],
            "bytes": a["total"]["bytes"] - b["total"]["bytes"],
            "full_usd": a["full_replication"]["usd"] - b["full_replication"]["usd"],
            "read_bytes": a["reads"]["bytes"] - b["reads"]["bytes"],
            "reads": a["reads"]["count"] - b["reads"]["count"],
            "written_bytes": a["full_replication"]["written_bytes"] - b["full_replication"]["written_bytes"],
            "writes": a["full_replication"]["writes"] - b["full_replication"]["writes"],
        }
        for cause in ("replication", "remote_read", "repair"):
            d[f"{cause}_usd"] = a["by_cause"][cause]["usd"] - b["by_cause"][cause]["usd"]
            d[f"{cause}_bytes"] = a["by_cause"][cause]["bytes"] - b["by_cause"][cause]["bytes"]
        per_region[region] = d
        for k in tot:
            tot[k] += d[k]
        bf = {(f["from"], f["to"], f["cause"]): f for f in b["flows"]}
        for f in a["flows"]:
            key = (f["from"], f["to"], f["cause"])
            old = bf.get(key, {"bytes": 0, "usd": 0.0})
            if f["bytes"] - old["bytes"] > 0:
                e = flows.setdefault(f"{key[0]}>{key[1]} {key[2]}", {"bytes": 0, "usd": 0.0})
                e["bytes"] += f["bytes"] - old["bytes"]
                e["usd"] += f["usd"] - old["usd"]
    tot["egress_usd"] = tot["replication_usd"] + tot["remote_read_usd"]
    tot["ratio_to_full"] = tot["egress_usd"] / tot["full_usd"] if tot["full_usd"] > 0 else None
    tot["local_read_ratio"] = (1.0 - tot["remote_read_bytes"] / tot["read_bytes"]
                               if tot["read_bytes"] > 0 else None)
    return {"total": tot, "per_region": per_region, "flows": dict(sorted(flows.items()))}


def cmd_replay(a):
    if boto3 is None:
        sys.exit("replay: boto3 is missing: use Debian's /usr/bin/python3 (python3-boto3)")
    endpoints = dict(e.split("=", 1) for e in a.endpoints.split(","))
    names = list(endpoints)
    rows = read_trace(a.trace)
    if a.limit_events:
        rows = rows[:a.limit_events]
    for r in rows:
        if r[1] not in endpoints:
            sys.exit(f"replay: region {r[1]} of the trace has no endpoint")
    ak, sk = a.access_key, a.secret_key
    egress = lambda: {n: admin_json(e, "/_tern/egress", ak, sk) for n, e in endpoints.items()}
    pstats = lambda: {n: admin_json(e, "/_tern/placement/stats", ak, sk) for n, e in endpoints.items()}

    rp = Replay(a, rows, names)
    clients = make_clients(endpoints, ak, sk, a.threads + 4)
    probe_clients = make_clients(endpoints, ak, sk, 8)
    for b in sorted({r[3] for r in rows} | {LAG_BUCKET}):
        create_bucket(clients, names, b)
    eg_before = egress()
    for n, d in eg_before.items():
        if "error" in d:
            sys.exit(f"replay: GET {endpoints[n]}/_tern/egress: {d}")
    ps_before = pstats()

    parts = [[] for _ in range(a.threads)]
    for r in rows:
        parts[zlib.crc32(f"{r[3]}/{r[4]}".encode()) % a.threads].append(r)
    ts0 = rows[0][0] if rows else 0
    planned = (rows[-1][0] - ts0) / a.time_scale / 1000.0 if rows else 0.0
    print(f"replay: {len(rows)} events over {planned:.1f} s of wall time (time scale "
          f"{a.time_scale}), {a.threads} workers, regions {', '.join(names)}", flush=True)
    t0 = time.monotonic() + 1.0
    rp.t0 = t0
    threads = [threading.Thread(target=rp.worker, args=(p, t0, ts0, clients), daemon=True)
               for p in parts]
    prober = threading.Thread(target=rp.prober, args=(probe_clients,), daemon=True)
    for t in threads:
        t.start()
    prober.start()
    hard_end = t0 + planned + a.max_overrun
    last = time.monotonic()
    overran = False
    while any(t.is_alive() for t in threads):
        time.sleep(0.2)
        now = time.monotonic()
        if now > hard_end:
            print(f"replay: {a.max_overrun:.0f} s past the planned end: stopping", flush=True)
            rp.stop.set()
            overran = True
            break
        if now - last >= a.progress_interval:
            last = now
            c = rp.stats.c
            print(f"  {now - t0:6.1f}s / {planned:.0f}s  puts {c['puts']} gets {c['gets']} "
                  f"misses {c['replication_misses']} errors {c['errors']} lag p99 "
                  f"{pct(rp.lags, 0.99) or 0:.2f}s ({len(rp.lags)} markers)", flush=True)
    replay_s = time.monotonic() - t0
    rp.stop.set()
    for t in threads:
        t.join(timeout=a.max_overrun)
    prober.join(timeout=a.lag_timeout + 5)

    # Settle: a marker per region, waited for everywhere (bounded).
    t_settle = time.monotonic()
    settled = True
    for src in names:
        key, body = f"settle-{src}", f"settle {time.time():.6f}".encode()
        try:
            probe_clients[src].put_object(Bucket=LAG_BUCKET, Key=key, Body=body)
        except (ClientError, BotoCoreError, OSError):
            settled = False
            continue
        ok = wait_visible(probe_clients, LAG_BUCKET, key, body, [r for r in names if r != src],
                          t_settle, a.settle_timeout)
        settled = settled and ok is not None
    settle_s = time.monotonic() - t_settle
    eg_after = egress()
    ps_after = pstats()

    # The engine's view of the hottest objects, for diagnosis.
    hits = {}
    for r in rows:
        hits[(r[3], r[4])] = hits.get((r[3], r[4]), 0) + 1
    hot = sorted(hits, key=lambda k: -hits[k])[:a.explain]
    explain = {f"{b}/{k}": {n: admin_json(e, f"/_tern/placement/explain?bucket={b}&key={k}", ak, sk)
                            for n, e in endpoints.items()} for b, k in hot}

    st = rp.stats
    late = st.late_s
    # sim gen writes every object's first PUT in the first 2% of the span: the compressed replay
    # sends that burst at TIME_SCALE times its rate and the shippers take a while to drain it.
    # The second half of the replay is the steady state.
    first_put = {}
    for r in rows:
        if r[2] == "PUT":
            first_put.setdefault((r[3], r[4]), r[0])
    burst_end_s = (max(first_put.values()) - ts0) / a.time_scale / 1000.0 if first_put else 0.0
    steady = [x[2] for x in rp.lag_samples if x[0] >= planned / 2 and x[2] is not None]
    # Reads classified by client time to first byte: ternd sends the headers with the first
    # block, so a read served from another region waits at least one WAN RTT (the smallest is
    # 2 x the smallest proxy delay) before them; above --remote-ms it counts as remote. A repeat
    # is a remote read of a version this region had already read (copy on first read would
    # have served it locally).
    seen, remote, repeat, remote_bytes, repeat_bytes = set(), 0, 0, 0, 0
    by_region = {}
    with open(os.path.join(os.path.dirname(os.path.abspath(a.out)), "reads.csv"), "w") as fh:
        fh.write("start_s,region,bucket,key,version,ttfb_ms,ms,bytes\n")
        for t, region, k, v, ttfb, ms, nb in st.read_log:
            fh.write(f"{t:.3f},{region},{k[0]},{k[1]},{v},{ttfb:.1f},{ms:.1f},{nb}\n")
    for _, region, k, v, ms, _, nb in sorted(st.read_log, key=lambda x: x[0]):
        rr = by_region.setdefault(region, {"reads": 0, "remote": 0, "repeat_remote": 0,
                                           "repeat_remote_bytes": 0})
        rr["reads"] += 1
        if ms > a.remote_ms:
            remote += 1
            remote_bytes += nb
            rr["remote"] += 1
            if (region, k, v) in seen:
                repeat += 1
                repeat_bytes += nb
                rr["repeat_remote"] += 1
                rr["repeat_remote_bytes"] += nb
        seen.add((region, k, v))
    n_reads = len(st.read_log)
    read_classes = {"remote_ms": a.remote_ms, "reads": n_reads, "remote": remote,
                    "remote_bytes": remote_bytes,
                    "local_ratio_by_count": 1 - remote / n_reads if n_reads else None,
                    "repeat_remote": repeat, "repeat_remote_bytes": repeat_bytes,
                    "by_region": by_region}
    live = {
        "trace": os.path.abspath(a.trace), "events": len(rows), "time_scale": a.time_scale,
        "threads": a.threads, "planned_s": planned, "replay_s": replay_s,
        "stopped_early": overran,
        "settled": settled, "settle_s": settle_s,
        "client": dict(st.c),
        "errors_by_kind": st.errors_by_kind, "last_error": st.last_error,
        "read_ms": {"count": len(st.read_ms), "p50": pct(st.read_ms, 0.5),
                    "p90": pct(st.read_ms, 0.9), "p99": pct(st.read_ms, 0.99),
                    "max": max(st.read_ms) if st.read_ms else None},
        "read_ms_by_region": {r: {"count": len(v), "p50": pct(v, 0.5), "p99": pct(v, 0.99)}
                              for r, v in sorted(st.read_ms_by_region.items())},
        "lateness_s": {"late_events": len(late), "p50": pct(late, 0.5), "p99": pct(late, 0.99),
                       "max": max(late) if late else None},
        "lag_s": {"markers": len(rp.lags), "timeouts": rp.lag_timeouts,
                  "p50": pct(rp.lags, 0.5), "p99": pct(rp.lags, 0.99),
                  "max": max(rp.lags) if rp.lags else None, "timeout_s": a.lag_timeout,
                  "initial_put_burst_s": burst_end_s, "steady_markers": len(steady),
                  "steady_p50": pct(steady, 0.5), "steady_p99": pct(steady, 0.99),
                  "samples": rp.lag_samples},
        "read_classes": read_classes,
        "egress": egress_delta(eg_before, eg_after),
        "egress_raw": {"before": eg_before, "after": eg_after},
        "placement_stats": {"before": ps_before, "after": ps_after},
        "explain": explain,
    }
    if a.proxy_control:
        routes = [f"{s}>{d}" for s in names for d in names if s != d]
        try:
            replies = proxy_send(a.proxy_control, [f"stats {r}" for r in routes])
            live["proxy_stats"] = {}
            for r, rep in zip(routes, replies):
                live["proxy_stats"][r] = dict(kv.split("=") for kv in rep.split()[1:]) \
                    if rep.startswith("ok") else rep
        except OSError as e:
            live["proxy_stats"] = f"unavailable: {e}"
    with open(a.out, "w") as f:
        json.dump(live, f, indent=2)
    c = st.c
    print(f"replay: done in {replay_s:.1f} s (planned {planned:.1f} s), settle {settle_s:.1f} s"
          f"{'' if settled else ' (NOT settled)'}: {c['puts']} PUTs, {c['gets']} GETs, "
          f"{c['replication_misses']} replication misses, {c['stale_reads']} stale, "
          f"{c['trace_misses']} trace misses, {c['errors']} errors; wrote {a.out}", flush=True)


# ---------------------------------------------------------------- summarize

def cmd_summarize(a):
    live = json.load(open(a.live))
    sim = {r["policy"]: r for r in json.load(open(a.sim))}
    info = json.load(open(a.info))
    eg = live["egress"]["total"]
    b, full, oracle = sim["bandit"], sim["full"], sim["oracle"]
    sim_egress = b["egress_usd"] + b["transfer_usd"]
    sim_full = full["egress_usd"] + full["transfer_usd"]
    sim_oracle = oracle["egress_usd"] + oracle["transfer_usd"]
    live_usd, live_full = eg["egress_usd"], eg["full_usd"]
    ratio_full = live_usd / live_full if live_full > 0 else float("nan")
    local = eg["local_read_ratio"] if eg["local_read_ratio"] is not None else float("nan")
    live_sim = live_usd / sim_egress if sim_egress > 0 else float("nan")
    T_FULL, T_LOCAL, T_SIM = 0.5, 0.9, 0.10
    targets = {
        "egress_over_full": {"value": ratio_full, "max": T_FULL, "met": ratio_full <= T_FULL},
        "local_read_ratio": {"value": local, "min": T_LOCAL * 1.0, "full": 1.0,
                             "met": local >= T_LOCAL * 1.0},
        "live_over_sim": {"value": live_sim, "tolerance": T_SIM,
                          "met": abs(live_sim - 1.0) <= T_SIM},
    }
    c = live["client"]
    rd, lag, late = live["read_ms"], live["lag_s"], live["lateness_s"]
    rc = live.get("read_classes", {})
    f = lambda v, fmt="{:.1f}": "-" if v is None else fmt.format(v)
    usd = lambda v: f"${v:.6g}"
    S = info["size_scale"]
    lines = [
        f"== geo benchmark: {info['events']} events ({info['ops']['PUT']} PUT, {info['ops']['GET']} GET, "
        f"{info['ops']['DELETE']} DELETE), {info['objects']} objects, trace span "
        f"{info['span_ms'] / 3.6e6:.1f} h",
        f"   sizes scaled by 1/{S} (largest object {info['raw_max_object_bytes']} -> "
        f"{info['max_object_bytes']} bytes; PUT {info['put_bytes'] / 1e6:.1f} MB, GET "
        f"{info['get_bytes'] / 1e6:.1f} MB); dollars are for the scaled trace (x{S} for the raw one)",
        f"   replay {live['replay_s']:.1f} s wall (planned {live['planned_s']:.1f} s, time scale "
        f"{live['time_scale']}, {live['threads']} workers); events started late: "
        f"{late['late_events']}, p99 {f(late['p99'], '{:.2f}')} s, max {f(late['max'], '{:.2f}')} s; "
        f"settle {live['settle_s']:.1f} s{'' if live['settled'] else ' NOT SETTLED'}",
        f"   client: {c['puts']} PUTs, {c['gets']} GETs verified, {c['replication_misses']} GETs "
        f"missed (404: the PUT had not reached that region), {c['stale_reads']} stale (older "
        f"version), {c['trace_misses']} trace misses (404 in the simulator too), "
        f"{c['wrong_bytes']} wrong bytes, {c['errors']} errors",
        "",
        "What is compared: live egress $ = replication + remote_read dollars summed over the regions'",
        "GET /_tern/egress (each region records what it sent or fetched; repair listed apart). Simulator",
        "= egress_usd (remote reads) + transfer_usd (PUT shipping and replica copies) of the same policy",
        "on the same scaled trace and topology; storage_usd is left out of both.",
        "",
        f"{'figure':<44} {'live':>14} {'simulator':>14}",
        f"{'egress $ (bandit engine)':<44} {usd(live_usd):>14} {usd(sim_egress):>14}",
        f"{'  live replication (PUT shipping, metadata)':<44} {usd(eg['replication_usd']):>14} {'':>14}",
        f"{'  live remote_read (copies on read included)':<44} {usd(eg['remote_read_usd']):>14} {'':>14}",
        f"{'  live repair (not in the egress $ above)':<44} {usd(eg['repair_usd']):>14} {'':>14}",
        f"{'  sim transfer_usd (shipping + all copies)':<44} {'':>14} {usd(b['transfer_usd']):>14}",
        f"{'  sim egress_usd (remote reads, no copy)':<44} {'':>14} {usd(b['egress_usd']):>14}",
        f"{'full replication $':<44} {usd(live_full):>14} {usd(sim_full):>14}",
        f"{'egress / full replication':<44} {ratio_full:>14.4f} {sim_egress / sim_full if sim_full else float('nan'):>14.4f}",
        f"{'oracle egress $ (sim), / full':<44} {'':>14} {usd(sim_oracle) + f' {sim_oracle / sim_full:.3f}x' if sim_full else '-':>14}",
        f"{'local read ratio (live: bytes; sim: reads)':<44} {local:>14.4f} {b['local_read_ratio']:>14.4f}",
        f"{'read latency p50 ms (sim: local = 0)':<44} {f(rd['p50']):>14} {b['read_latency_ms_p50']:>14.1f}",
        f"{'read latency p99 ms':<44} {f(rd['p99']):>14} {b['read_latency_ms_p99']:>14.1f}",
        f"{'replication lag p99 s (markers)':<44} {f(lag['p99'], '{:.2f}'):>14} {'-':>14}",
        f"{'   ({} markers, {} timed out at {:.0f} s, p50 {} s, max {} s)'.format(lag['markers'], lag['timeouts'], lag['timeout_s'], f(lag['p50'], '{:.2f}'), f(lag['max'], '{:.2f}'))}",
        f"{'replication lag p99 s, second half of replay':<44} {f(lag.get('steady_p99'), '{:.2f}'):>14} {'-':>14}",
        f"{'   ({} markers; every first PUT was sent in the first {:.1f} s)'.format(lag.get('steady_markers'), lag.get('initial_put_burst_s', 0))}",
        f"{'local read ratio by count (live: estimate)':<44} {f(rc.get('local_ratio_by_count'), '{:.4f}'):>14} {b['local_read_ratio']:>14.4f}",
        f"{'   (live: first byte after {:.0f} ms counts as remote: {} of {}; {} repeat a version'.format(rc.get('remote_ms', 0), rc.get('remote'), rc.get('reads'), rc.get('repeat_remote'))}",
        f"{'    that region had read before, {} bytes)'.format(rc.get('repeat_remote_bytes'))}",
        f"{'reads (live: verified GETs; sim: reads)':<44} {c['gets']:>14} {b['reads']:>14}",
        "",
        "egress by flow (live, summed over regions):",
    ]
    for k, v in live["egress"]["flows"].items():
        lines.append(f"   {k:<36} {v['bytes']:>14} bytes  {usd(v['usd'])}")
    # Cross-check: bytes the proxy carried from A to B (route A>B requests, route B>A answers)
    # against the bytes counted as egress from A to B; the wire adds HTTP headers and requests.
    wire = {}
    ps = live.get("proxy_stats")
    if isinstance(ps, dict) and all(isinstance(v, dict) for v in ps.values()):
        counted = {}
        for k, v in live["egress"]["flows"].items():
            pair = k.split()[0]
            counted[pair] = counted.get(pair, 0) + v["bytes"]
        lines += ["", "wire check: bytes through the proxy A->B (route A>B out, route B>A back) "
                  "vs bytes counted as egress A->B:"]
        for route, v in ps.items():
            src, dst = route.split(">")
            back = ps.get(f"{dst}>{src}", {})
            w = int(v["bytes_a2b"]) + int(back.get("bytes_b2a", 0))
            n = counted.get(route, 0)
            wire[route] = {"wire_bytes": w, "counted_bytes": n}
            lines.append(f"   {route:<24} wire {w:>12}  counted {n:>12}  "
                         f"{(w / n) if n else float('nan'):8.3f}x")
    lines += [
        "",
        f"{'target':<52} {'measured':>10}  verdict",
        f"{'live egress $ <= 0.5x full replication':<52} {ratio_full:>10.4f}  "
        f"{'met' if targets['egress_over_full']['met'] else 'NOT MET'}",
        f"{'live local read ratio >= 0.9x full (1.0)':<52} {local:>10.4f}  "
        f"{'met' if targets['local_read_ratio']['met'] else 'NOT MET'}",
        f"{'live egress $ within 10% of the simulator':<52} {live_sim:>10.4f}  "
        f"{'met' if targets['live_over_sim']['met'] else 'NOT MET'}",
    ]
    all_met = all(t["met"] for t in targets.values())
    lines.append(f"\nall targets: {'met' if all_met else 'NOT MET'}   (results in {a.out_dir})")
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(a.out_dir, "summary.txt"), "w") as fh:
        fh.write(text + "\n")
    summary = {
        "targets": targets, "all_met": all_met,
        "live": {"egress_usd": live_usd, "full_usd": live_full, "ratio_to_full": ratio_full,
                 "replication_usd": eg["replication_usd"], "remote_read_usd": eg["remote_read_usd"],
                 "repair_usd": eg["repair_usd"], "local_read_ratio_bytes": local,
                 "read_ms_p50": rd["p50"], "read_ms_p99": rd["p99"], "lag_s_p99": lag["p99"],
                 "lag_s_p50": lag["p50"], "lag_markers": lag["markers"],
                 "lag_s_steady_p99": lag.get("steady_p99"), "read_classes": rc,
                 "lag_timeouts": lag["timeouts"], "client": c, "replay_s": live["replay_s"],
                 "planned_s": live["planned_s"], "lateness_s": late, "settled": live["settled"],
                 "flows": live["egress"]["flows"]},
        "sim": {"bandit_egress_plus_transfer_usd": sim_egress, "full_usd": sim_full,
                "oracle_usd": sim_oracle,
                "bandit_over_full": sim_egress / sim_full if sim_full else None,
                "oracle_over_full": sim_oracle / sim_full if sim_full else None,
                "bandit": b, "full": full, "oracle": oracle},
        "live_over_sim": live_sim,
        "wire_check": wire,
        "live_full_over_sim_full": live_full / sim_full if sim_full else None,
        "trace": info,
    }
    with open(os.path.join(a.out_dir, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=2)
    sys.exit(0 if all_met else 3)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("prepare")
    s.add_argument("--in", dest="inp", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--info", required=True)
    s.add_argument("--budget", type=float, default=1e9)
    s.add_argument("--scale", type=int, default=0, help="size divisor (0: from --budget)")
    s = sub.add_parser("ports")
    s.add_argument("n", type=int)
    s = sub.add_parser("topology")
    s.add_argument("--base", required=True)
    s.add_argument("--ports", required=True)
    s.add_argument("--out-dir", required=True)
    s = sub.add_parser("proxy")
    s.add_argument("--control", required=True)
    s.add_argument("lines", nargs="+")
    s = sub.add_parser("replay")
    s.add_argument("--trace", required=True)
    s.add_argument("--endpoints", required=True, help="REGION=URL,... (each region's real port)")
    s.add_argument("--access-key", required=True)
    s.add_argument("--secret-key", required=True)
    s.add_argument("--time-scale", type=float, required=True)
    s.add_argument("--threads", type=int, default=12)
    s.add_argument("--lag-interval", type=float, default=2.0)
    s.add_argument("--lag-timeout", type=float, default=30.0)
    s.add_argument("--settle-timeout", type=float, default=90.0)
    s.add_argument("--max-overrun", type=float, default=120.0,
                   help="stop the replay this many seconds after its planned end")
    s.add_argument("--progress-interval", type=float, default=15.0)
    s.add_argument("--explain", type=int, default=5, help="hottest objects to explain")
    s.add_argument("--limit-events", type=int, default=0)
    s.add_argument("--remote-ms", type=float, default=60.0,
                   help="a GET whose first byte took longer counts as remote in the estimate")
    s.add_argument("--proxy-control", default="")
    s.add_argument("--out", required=True)
    s = sub.add_parser("summarize")
    s.add_argument("--live", required=True)
    s.add_argument("--sim", required=True)
    s.add_argument("--info", required=True)
    s.add_argument("--out-dir", required=True)
    a = p.parse_args()
    {"prepare": cmd_prepare, "ports": cmd_ports, "topology": cmd_topology, "proxy": cmd_proxy,
     "replay": cmd_replay, "summarize": cmd_summarize}[a.cmd](a)


if __name__ == "__main__":
    main()
