#!/usr/bin/python3
"""Helpers of bench/raft_vs_etcd: presigned PUT URLs, bucket creation, merging wrk results,
one leader-failover trial, and the summary table. Run by run.sh and failover.sh.

Every network call has a timeout and every loop a bound, like the shell around it.
"""

import argparse
import datetime
import hashlib
import hmac
import json
import os
import signal
import statistics
import sys
import threading
import time
import urllib.parse
import http.client

UNSIGNED = "UNSIGNED-PAYLOAD"


# ----------------------------------------------------------------------------
# SigV4 presigning
# ----------------------------------------------------------------------------

class Presigner:
    """SigV4 query-string presigning of path-style PUTs, as botocore does it.

    botocore's generate_presigned_url costs about 140 us per URL on this machine; this one
    reuses the signing key and costs a tenth of that, which matters for 10^5 URLs. It is
    checked against botocore once per run (check_against_botocore)."""

    def __init__(self, endpoint, region, access_key, secret_key, expires_s, amz_date=None):
        parsed = urllib.parse.urlsplit(endpoint)
        self.endpoint = endpoint.rstrip("/")
        self.host = parsed.netloc
        self.region = region
        self.access_key = access_key
        self.expires_s = int(expires_s)
        self.amz_date = amz_date or datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y%m%dT%H%M%SZ")
        day = self.amz_date[:8]
        self.scope = f"{day}/{region}/s3/aws4_request"
        key = ("AWS4" + secret_key).encode()
        for part in (day, region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        self.signing_key = key
        credential = urllib.parse.quote(f"{access_key}/{self.scope}", safe="")
        # The canonical query is sorted by name; the URL keeps botocore's order.
        self.canonical_query = (f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={credential}"
                                f"&X-Amz-Date={self.amz_date}&X-Amz-Expires={self.expires_s}"
                                f"&X-Amz-SignedHeaders=host")
        self.url_query = (f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={credential}"
                          f"&X-Amz-Date={self.amz_date}&X-Amz-SignedHeaders=host"
                          f"&X-Amz-Expires={self.expires_s}")

    def path(self, method, bucket, key):
        """The request target (path and query) of a presigned request."""
        uri = "/" + urllib.parse.quote(bucket, safe="") + "/" + urllib.parse.quote(key, safe="/~")
        canonical = (f"{method}\n{uri}\n{self.canonical_query}\nhost:{self.host}\n\nhost\n"
                     f"{UNSIGNED}")
        to_sign = (f"AWS4-HMAC-SHA256\n{self.amz_date}\n{self.scope}\n"
                   f"{hashlib.sha256(canonical.encode()).hexdigest()}")
        signature = hmac.new(self.signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
        return f"{uri}?{self.url_query}&X-Amz-Signature={signature}"


def botocore_client(endpoint, region, access_key, secret_key, timeout_s=10.0, retries=0):
    import boto3
    from botocore.config import Config
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name=region, aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                      connect_timeout=timeout_s, read_timeout=timeout_s,
                      retries={"max_attempts": retries, "mode": "standard"}))


def check_against_botocore(endpoint, region, access_key, secret_key, bucket, expires_s):
    """Fails loudly if our presigned URL differs from botocore's for the same date."""
    client = botocore_client(endpoint, region, access_key, secret_key)
    theirs = client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "check-0"},
                                           ExpiresIn=expires_s)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(theirs).query))
    ours = Presigner(endpoint, region, access_key, secret_key, expires_s,
                     amz_date=query["X-Amz-Date"]).path("PUT", bucket, "check-0")
    ours_query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(ours).query))
    if ours_query != query:
        raise SystemExit(f"presign self-check failed:\n botocore {theirs}\n ours     {ours}")


def cmd_presign(a):
    check_against_botocore(a.endpoint, a.region, a.access_key, a.secret_key, a.bucket, a.expires)
    signer = Presigner(a.endpoint, a.region, a.access_key, a.secret_key, a.expires)
    files = [open(f"{a.out}.{t + 1}", "w") for t in range(a.threads)]
    try:
        # Thread t (1-based, the wrk thread id) gets keys t-1, t-1+T, ...: disjoint slices.
        for i in range(a.count):
            files[i % a.threads].write(signer.path("PUT", a.bucket, f"{a.prefix}{i:010d}") + "\n")
    finally:
        for f in files:
            f.close()


def cmd_mkbucket(a):
    """Creates the bucket, retrying while the region elects its first leader (bounded)."""
    client = botocore_client(a.endpoint, a.region, a.access_key, a.secret_key, timeout_s=5.0)
    deadline = time.monotonic() + a.timeout
    last = None
    for _ in range(int(a.timeout / 0.2) + 2):
        try:
            client.create_bucket(Bucket=a.bucket)
            return
        except Exception as e:  # noqa: BLE001 - any failure is retried until the deadline
            code = getattr(e, "response", {}).get("Error", {}).get("Code")
            if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return
            last = e
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    raise SystemExit(f"create bucket {a.bucket} on {a.endpoint} failed: {last}")


# ----------------------------------------------------------------------------
# wrk results
# ----------------------------------------------------------------------------

def merged_percentile(runs, p):
    """Percentile p of the union of several runs, each given by its request count and its
    quantile function sampled at points (p_k, x_k). Each run's CDF is interpolated linearly
    between its points; exact when there is one run (its own points are returned)."""
    if len(runs) == 1:
        points = runs[0]["quantiles_us"]
        for q, x in points:
            if q >= p - 1e-9:
                return x
        return points[-1][1]
    total = sum(r["latency_count"] for r in runs)

    def cdf(x):
        acc = 0.0
        for r in runs:
            pts = r["quantiles_us"]
            if x < pts[0][1]:
                frac = 0.0
            elif x >= pts[-1][1]:
                frac = 100.0
            else:
                frac = pts[0][0]
                for (q0, x0), (q1, x1) in zip(pts, pts[1:]):
                    if x0 <= x < x1:
                        frac = q0 + (q1 - q0) * (x - x0) / (x1 - x0)
                        break
                    if x >= x1:
                        frac = q1
            acc += r["latency_count"] * frac
        return acc / total

    xs = sorted({x for r in runs for _, x in r["quantiles_us"]})
    lo, hi = 0, len(xs) - 1
    while lo < hi:  # smallest sampled x with cdf(x) >= p
        mid = (lo + hi) // 2
        if cdf(xs[mid]) >= p - 1e-9:
            hi = mid
        else:
            lo = mid + 1
    return xs[lo]


def cmd_wrk_merge(a):
    runs = []
    for path in a.files:
        with open(path) as f:
            lines = [json.loads(line) for line in f if line.strip()]
        if not lines:
            raise SystemExit(f"{path}: wrk wrote no result (did it run?)")
        runs.append(lines[-1])
    requests = sum(r["requests"] for r in runs)
    errors = {k: sum(r["errors"][k] for r in runs) for k in runs[0]["errors"]}
    failed = errors["status"] + errors["timeout"]
    duration_s = max(r["duration_us"] for r in runs) / 1e6
    counted = sum(r["latency_count"] for r in runs)
    mean_us = (sum(r["latency_mean_us"] * r["latency_count"] for r in runs) / counted
               if counted else 0.0)
    issued = sum(r.get("issued", 0) for r in runs)
    keys = sum(r.get("keys", 0) for r in runs)
    out = {
        "wrk_processes": len(runs),
        "connections": a.connections,
        "requests": requests,
        "requests_ok": requests - errors["status"],
        "errors": errors,
        "duration_s": duration_s,
        "ops_per_s": (requests - errors["status"]) / duration_s if duration_s else 0.0,
        "latency_ms_mean": mean_us / 1000,
        "latency_ms_p50": merged_percentile(runs, 50.0) / 1000 if counted else None,
        "latency_ms_p90": merged_percentile(runs, 90.0) / 1000 if counted else None,
        "latency_ms_p99": merged_percentile(runs, 99.0) / 1000 if counted else None,
        "latency_ms_p999": merged_percentile(runs, 99.9) / 1000 if counted else None,
        "latency_ms_max": max(r["latency_max_us"] for r in runs) / 1000,
        "latency_exact": len(runs) == 1,
        "failed": failed,
        "requests_issued": issued,
        "distinct_keys": keys,
        "keys_reused": bool(keys) and issued > keys,
    }
    print(json.dumps(out))


# ----------------------------------------------------------------------------
# leader metrics
# ----------------------------------------------------------------------------

def parse_prometheus(path):
    values = {}
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("#") or not line.strip():
                    continue
                name, _, value = line.rpartition(" ")
                try:
                    values[name.strip()] = float(value)
                except ValueError:
                    pass
    except OSError:
        pass
    return values


# Per system: the leader's log fsync histogram (count, sum) and its Raft log position.
METRICS = {
    "etcd": {"sync_count": "etcd_disk_wal_fsync_duration_seconds_count",
             "sync_sum": "etcd_disk_wal_fsync_duration_seconds_sum",
             "entries": "etcd_server_proposals_committed_total"},
    "tern": {"sync_count": "tern_raft_log_sync_seconds_count",
             "sync_sum": "tern_raft_log_sync_seconds_sum",
             "entries": "tern_raft_last_index"},
}


def cmd_metrics_delta(a):
    """What the leader's log did during a run: fsyncs, entries, entries per PUT and per fsync.
    Explains a throughput difference (batching) without being part of the comparison."""
    before, after = parse_prometheus(a.before), parse_prometheus(a.after)
    names = METRICS[a.system]
    delta = {}
    for key, name in names.items():
        if name in before and name in after:
            delta[key] = after[name] - before[name]
    out = {}
    if "sync_count" in delta and delta["sync_count"] > 0:
        out["log_fsyncs"] = int(delta["sync_count"])
        out["log_fsyncs_per_s"] = delta["sync_count"] / a.seconds
        if "sync_sum" in delta:
            out["log_fsync_ms_mean"] = delta["sync_sum"] / delta["sync_count"] * 1000
    if "entries" in delta:
        out["log_entries"] = int(delta["entries"])
        if a.ops > 0:
            out["log_entries_per_put"] = delta["entries"] / a.ops
        if delta.get("sync_count", 0) > 0:
            out["log_entries_per_fsync"] = delta["entries"] / delta["sync_count"]
    if a.ops > 0 and delta.get("sync_count", 0) > 0:
        out["puts_per_fsync"] = a.ops / delta["sync_count"]
    print(json.dumps(out))


# ----------------------------------------------------------------------------
# failover trial
# ----------------------------------------------------------------------------

class Writer:
    """Issues one presigned PUT every interval_s, round-robin over endpoints, each on its own
    connection and thread, whatever the previous ones are doing: a request stuck behind a
    dead leader does not delay the next one, so the first success after the kill is seen
    within about one interval of when the region could first acknowledge it."""

    def __init__(self, endpoints, region, access_key, secret_key, bucket, prefix, body,
                 interval_s, request_timeout_s, inflight_max):
        self.signers = [Presigner(e, region, access_key, secret_key, 3600) for e in endpoints]
        self.bucket = bucket
        self.prefix = prefix
        self.body = body
        self.interval_s = interval_s
        self.request_timeout_s = request_timeout_s
        self.inflight = threading.Semaphore(inflight_max)
        self.lock = threading.Lock()
        self.results = []  # (t_send, t_done, status or error text, endpoint index)
        self.stop = threading.Event()
        self.threads = []
        self.sequence = 0

    def _put(self, index, seq):
        signer = self.signers[index]
        path = signer.path("PUT", self.bucket, f"{self.prefix}{seq:08d}")
        conn = http.client.HTTPConnection(signer.host, timeout=self.request_timeout_s)
        t_send = time.monotonic()
        try:
            conn.request("PUT", path, body=self.body,
                         headers={"Content-Length": str(len(self.body))})
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except Exception as e:  # noqa: BLE001 - every failure is a data point
            status = type(e).__name__
        finally:
            conn.close()
            self.inflight.release()
        with self.lock:
            self.results.append((t_send, time.monotonic(), status, index))

    def _loop(self):
        next_t = time.monotonic()
        for _ in range(10_000_000):
            if self.stop.is_set():
                return
            if self.inflight.acquire(timeout=self.interval_s):
                seq = self.sequence
                self.sequence += 1
                t = threading.Thread(target=self._put, args=(seq % len(self.signers), seq),
                                     daemon=True)
                t.start()
                self.threads.append(t)
            next_t += self.interval_s
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_t = time.monotonic()

    def start(self):
        self.loop_thread = threading.Thread(target=self._loop, daemon=True)
        self.loop_thread.start()

    def finish(self):
        self.stop.set()
        self.loop_thread.join(timeout=5)
        for t in self.threads:
            t.join(timeout=self.request_timeout_s + 1)

    def snapshot(self):
        with self.lock:
            return list(self.results)


def cmd_failover_trial(a):
    endpoints = a.endpoints.split(",")
    body = os.urandom(a.value_size)
    writer = Writer(endpoints, a.region, a.access_key, a.secret_key, a.bucket, a.prefix, body,
                    a.interval_ms / 1000, a.request_timeout, a.inflight_max)
    writer.start()
    out = {"kind": "failover_trial", "trial": a.trial, "killed_node": a.node_id,
           "killed_pid": a.pid, "endpoints": endpoints}
    try:
        # Before the kill: the writers must be succeeding, or the trial means nothing.
        deadline = time.monotonic() + a.warm_timeout
        ok_before = 0
        for _ in range(int(a.warm_timeout / 0.05) + 2):
            ok_before = sum(1 for r in writer.snapshot() if r[2] == 200)
            if ok_before >= a.warm_ok or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        out["ok_before_kill"] = ok_before
        if ok_before < a.warm_ok:
            statuses = sorted({str(r[2]) for r in writer.snapshot()})
            out["error"] = f"writes were not succeeding before the kill (statuses {statuses})"
            return out
        t_kill = time.monotonic()
        os.kill(a.pid, signal.SIGKILL)
        out["kill_wall_time"] = time.time()
        # Wait for the first PUT both sent and acknowledged after the kill.
        first = None
        deadline = t_kill + a.timeout
        for _ in range(int(a.timeout / 0.01) + 2):
            done = [r for r in writer.snapshot() if r[2] == 200 and r[0] >= t_kill]
            if done:
                first = min(done, key=lambda r: r[1])
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        # Let requests already in flight land, so the earliest success is the one reported.
        time.sleep(min(a.interval_ms / 1000 * 4, 0.2))
        after = [r for r in writer.snapshot() if r[0] >= t_kill]
        done = [r for r in after if r[2] == 200]
        if done:
            first = min(done, key=lambda r: r[1])
        any_ack = [r for r in writer.snapshot() if r[2] == 200 and r[1] >= t_kill]
        failures = {}
        for r in after:
            if r[2] != 200 and (first is None or r[1] <= first[1]):
                failures[str(r[2])] = failures.get(str(r[2]), 0) + 1
        out["failover_s"] = (first[1] - t_kill) if first else None
        out["first_ok_endpoint"] = endpoints[first[3]] if first else None
        out["first_ok_request_s"] = (first[1] - first[0]) if first else None
        # Acknowledgments of PUTs sent before the kill can arrive after it; they do not count.
        out["first_any_ack_s"] = (min(r[1] for r in any_ack) - t_kill) if any_ack else None
        out["failures_before_first_ok"] = failures
        out["requests_sent_after_kill"] = len(after)
        if first is None:
            out["error"] = f"no PUT succeeded within {a.timeout} s of the kill"
        return out
    finally:
        writer.finish()
        print(json.dumps(out), flush=True)


def cmd_put_once(a):
    """One presigned PUT; exit 0 on 200 (used to check a restarted node forwards writes)."""
    signer = Presigner(a.endpoint, a.region, a.access_key, a.secret_key, 3600)
    conn = http.client.HTTPConnection(signer.host, timeout=a.timeout)
    try:
        body = os.urandom(a.value_size)
        conn.request("PUT", signer.path("PUT", a.bucket, a.key), body=body,
                     headers={"Content-Length": str(len(body))})
        resp = conn.getresponse()
        resp.read()
        sys.exit(0 if resp.status == 200 else 1)
    except OSError:
        sys.exit(1)
    finally:
        conn.close()


# ----------------------------------------------------------------------------
# summary
# ----------------------------------------------------------------------------

def percentile_of(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    rank = max(1, min(len(s), int(-(-p * len(s) // 100))))
    return s[rank - 1]


def fmt(v, spec=".3f"):
    return "" if v is None else format(v, spec)


def cmd_summary(a):
    rows = [json.loads(line) for line in open(a.raw) if line.strip()]
    machine = next(r for r in rows if r["kind"] == "machine")
    puts = [r for r in rows if r["kind"] == "put"]
    trials = [r for r in rows if r["kind"] == "failover_trial"]
    notes = [r for r in rows if r["kind"] == "note"]
    lines = []
    hdr = (f"{'system':<7}{'nodes':>6}{'target':>8}{'clients':>8}{'value':>7}{'ops/s':>11}"
           f"{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}")
    results = []
    if puts:
        lines.append(hdr)
        lines.append("-" * len(hdr))
    for r in puts:
        errors = r["errors"]["status"] + r["errors"]["timeout"] + r["errors"]["connect"] + \
            r["errors"]["read"] + r["errors"]["write"]
        lines.append(f"{r['system']:<7}{r['nodes']:>6}{r['target']:>8}{r['connections']:>8}"
                     f"{r['value_bytes']:>7}{r['ops_per_s']:>11.1f}{fmt(r['latency_ms_p50']):>9}"
                     f"{fmt(r['latency_ms_p90']):>9}{fmt(r['latency_ms_p99']):>9}"
                     f"{fmt(r['latency_ms_max']):>9}{errors:>8}")
        results.append({k: r[k] for k in (
            "system", "nodes", "target", "connections", "value_bytes", "duration_s", "requests",
            "requests_ok", "errors", "ops_per_s", "latency_ms_mean", "latency_ms_p50",
            "latency_ms_p90", "latency_ms_p99", "latency_ms_p999", "latency_ms_max",
            "latency_exact", "wrk_processes", "keys_reused")}
                        | {"leader_metrics": r.get("leader_metrics")})
    for r in puts:
        m = r.get("leader_metrics") or {}
        if m:
            lines.append(f"  {r['system']} leader log: {fmt(m.get('log_fsyncs_per_s'), '.0f')} fsyncs/s, "
                         f"{fmt(m.get('log_fsync_ms_mean'))} ms each, "
                         f"{fmt(m.get('puts_per_fsync'), '.1f')} PUTs per fsync, "
                         f"{fmt(m.get('log_entries_per_put'), '.2f')} log entries per PUT")
    etcd = next((r for r in puts if r["system"] == "etcd"), None)
    tern = next((r for r in puts if r["system"] == "tern"), None)
    ratio = None
    if etcd and tern and etcd["ops_per_s"] > 0 and etcd["latency_ms_p99"]:
        ratio = {"throughput": tern["ops_per_s"] / etcd["ops_per_s"],
                 "p99": tern["latency_ms_p99"] / etcd["latency_ms_p99"],
                 "p50": tern["latency_ms_p50"] / etcd["latency_ms_p50"],
                 "tern_nodes": tern["nodes"]}
        lines.append("")
        lines.append(f"tern / etcd: throughput {ratio['throughput']:.2f}x (target >= 3), "
                     f"p99 {ratio['p99']:.2f}x (target <= 1), p50 {ratio['p50']:.2f}x"
                     + ("" if tern["nodes"] == 3 else
                        f"  [tern ran {tern['nodes']} node: a sanity run, not the comparison]"))
    for r in puts:
        if not r.get("latency_exact", True):
            lines.append(f"{r['system']}: percentiles merged from {r['wrk_processes']} wrk "
                         f"processes (interpolated, see README)")
            break
    for r in puts:
        if r.get("keys_reused"):
            lines.append(f"{r['system']}: more requests than presigned keys: some PUTs "
                         f"overwrote keys (raise KEYS_PER_S)")
    failover = None
    if trials:
        ok = [t["failover_s"] for t in trials if t.get("failover_s") is not None]
        failed = [t for t in trials if t.get("failover_s") is None]
        failover = {"trials": len(trials), "succeeded": len(ok), "failed": len(failed)}
        if ok:
            failover.update({"median_s": statistics.median(ok), "p90_s": percentile_of(ok, 90),
                             "max_s": max(ok), "min_s": min(ok)})
        lines.append("")
        lines.append(f"failover (SIGKILL of the leader to the first PUT sent and acknowledged "
                     f"after it), {len(trials)} trials, {len(failed)} failed:")
        if ok:
            lines.append(f"  median {failover['median_s']:.3f} s (target <= 1.5), "
                         f"p90 {failover['p90_s']:.3f} s, max {failover['max_s']:.3f} s, "
                         f"min {failover['min_s']:.3f} s")
            lines.append("  trials: " + " ".join(fmt(t.get("failover_s"), ".3f") or "fail"
                                                 for t in trials))
        for t in failed:
            lines.append(f"  trial {t['trial']}: {t.get('error', 'failed')}")
    for n in notes:
        lines.append(f"note: {n['text']}")
    lines.append(f"machine: {machine['nproc']} x {machine['cpu_model']}, disk {machine['disk']} "
                 f"({machine['fs']}), load {machine['loadavg_start']} at start, date "
                 f"{machine['date']}, git {machine['git']}"
                 + (f" (SKIP_BUILD: ternd built {machine.get('ternd_built')})"
                    if machine.get("skip_build") else "")
                 + f", {machine['etcd_version']}, {machine['wrk_version']}")
    print("\n".join(lines))
    with open(a.summary, "w") as f:
        json.dump({"machine": machine, "results": results, "ratio_tern_to_etcd": ratio,
                   "failover": failover, "raw": rows}, f, indent=2)
    print(f"\nraw results: {a.raw}\nsummary: {a.summary}")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def creds(p):
        p.add_argument("--region", required=True)
        p.add_argument("--access-key", required=True)
        p.add_argument("--secret-key", required=True)
        p.add_argument("--bucket", required=True)

    p = sub.add_parser("presign")
    creds(p)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--expires", type=int, default=86400)
    p.add_argument("--out", required=True, help="writes OUT.1 .. OUT.THREADS")
    p.set_defaults(fn=cmd_presign)

    p = sub.add_parser("mkbucket")
    creds(p)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--timeout", type=float, default=60)
    p.set_defaults(fn=cmd_mkbucket)

    p = sub.add_parser("wrk-merge")
    p.add_argument("--connections", type=int, required=True)
    p.add_argument("files", nargs="+")
    p.set_defaults(fn=cmd_wrk_merge)

    p = sub.add_parser("metrics-delta")
    p.add_argument("--system", choices=sorted(METRICS), required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--ops", type=int, required=True, help="successful PUTs in the interval")
    p.add_argument("before")
    p.add_argument("after")
    p.set_defaults(fn=cmd_metrics_delta)

    p = sub.add_parser("failover-trial")
    creds(p)
    p.add_argument("--endpoints", required=True, help="comma-separated S3 URLs of the survivors")
    p.add_argument("--pid", type=int, required=True, help="the leader's pid: SIGKILLed")
    p.add_argument("--node-id", type=int, required=True)
    p.add_argument("--trial", type=int, required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--value-size", type=int, default=256)
    p.add_argument("--interval-ms", type=float, default=5)
    p.add_argument("--request-timeout", type=float, default=5)
    p.add_argument("--inflight-max", type=int, default=256)
    p.add_argument("--warm-ok", type=int, default=20)
    p.add_argument("--warm-timeout", type=float, default=20)
    p.add_argument("--timeout", type=float, default=30)
    p.set_defaults(fn=cmd_failover_trial)

    p = sub.add_parser("put-once")
    creds(p)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--value-size", type=int, default=256)
    p.add_argument("--timeout", type=float, default=5)
    p.set_defaults(fn=cmd_put_once)

    p = sub.add_parser("summary")
    p.add_argument("raw")
    p.add_argument("summary")
    p.set_defaults(fn=cmd_summary)

    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
