#!/usr/bin/python3
"""A geo-skewed workload against the three regions `make run` starts (`make demo`).

Start the cluster first, in another terminal (`make run`); this script neither builds nor starts
anything. It creates the bucket `demo`, then until --ops operations or --seconds have passed:
PUTs objects of 16 KiB to 1 MiB and GETs existing ones, each key prefix having a home region
where most of its writes (--home-writes, 90%) and reads (--home-reads, 80%) happen. Meanwhile it
writes a small marker object every --lag-interval seconds in one region (in turn) and times
until the other two serve it (replication lag).

One live line shows: operations done, the egress dollars tern spent during this run against what
full replication of the same writes would have cost (and their ratio), the share of read bytes
served from a local copy, and the replication lag (last, p99). Egress figures are the sum, over
every node of the three regions, of the change of `GET /_tern/egress` since the run started (each
region records only what it sent). A summary follows at the end (or at Ctrl-C).

Defaults match scripts/run-regions.sh: S3 of region k node i at 127.0.0.1:9k0i, credentials
ternlocal / ternlocalsecret (TERN_ROOT_ACCESS_KEY / TERN_ROOT_SECRET_KEY override them, flags
override both). Exit status: 0 done, 1 cluster unreachable or failing, 130 interrupted.
"""
import argparse
import json
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
import urllib.error
import urllib.request

try:
    import boto3
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.config import Config
    from botocore.credentials import Credentials
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    sys.exit("demo: boto3 is missing: run it with Debian's /usr/bin/python3 "
             "(apt-get install python3-boto3, or make deps)")

REGION_COUNT = 3
DEFAULT_ENDPOINTS = "http://127.0.0.1:9101,http://127.0.0.1:9201,http://127.0.0.1:9301"
KIB = 1024
MIB = 1024 * 1024


def parse_size(text):
    units = {"": 1, "K": KIB, "KI": KIB, "KIB": KIB, "M": MIB, "MI": MIB, "MIB": MIB}
    t = text.strip().upper()
    num = t.rstrip("KMIB")
    unit = t[len(num):]
    if not num or unit not in units:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 16K, 1M)")
    return int(float(num) * units[unit])


def parse_args():
    p = argparse.ArgumentParser(
        description="Geo-skewed workload against a running `make run` cluster (start it first).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--endpoints", default=DEFAULT_ENDPOINTS,
                   help="the three regions' S3 endpoints, comma-separated")
    p.add_argument("--nodes", type=int, default=int(os.environ.get("NODES", "1") or 1),
                   help="nodes per region (NODES, as for make run): egress is summed over "
                        "127.0.0.1:9k01..9k0N; only with the default endpoints")
    p.add_argument("--access-key", default=os.environ.get("TERN_ROOT_ACCESS_KEY", "ternlocal"),
                   help="root access key (TERN_ROOT_ACCESS_KEY, else make run's)")
    p.add_argument("--secret-key", default=os.environ.get("TERN_ROOT_SECRET_KEY", "ternlocalsecret"),
                   help="root secret key (TERN_ROOT_SECRET_KEY, else make run's)")
    p.add_argument("--bucket", default="demo", help="bucket to create and use")
    p.add_argument("--ops", type=int, default=2000, help="PUTs and GETs to run (markers excluded)")
    p.add_argument("--seconds", type=float, default=120, help="stop the workload after this long")
    p.add_argument("--rate", type=float, default=25,
                   help="operations per second at most, to watch it happen (0: as fast as it goes)")
    p.add_argument("--min-size", type=parse_size, default="16K", help="smallest object (sizes log-uniform)")
    p.add_argument("--max-size", type=parse_size, default="1M", help="largest object")
    p.add_argument("--write-share", type=float, default=0.3, help="share of operations that PUT")
    p.add_argument("--home-reads", type=float, default=0.8,
                   help="share of a prefix's GETs made in its home region")
    p.add_argument("--home-writes", type=float, default=0.9,
                   help="share of a prefix's PUTs made in its home region")
    p.add_argument("--prefixes", type=int, default=12, help="key prefixes (homes spread over the regions)")
    p.add_argument("--concurrency", type=int, default=2, help="client threads")
    p.add_argument("--lag-interval", type=float, default=2.0, help="seconds between lag markers")
    p.add_argument("--lag-timeout", type=float, default=30.0,
                   help="a marker not seen everywhere after this long counts as timed out")
    p.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable workload")
    a = p.parse_args()
    if a.endpoints != DEFAULT_ENDPOINTS:
        a.endpoints = [e.strip().rstrip("/") for e in a.endpoints.split(",") if e.strip()]
        if len(a.endpoints) != REGION_COUNT:
            p.error(f"--endpoints needs {REGION_COUNT} endpoints, one per region")
        a.egress_endpoints = [[e] for e in a.endpoints]
    else:
        if not 1 <= a.nodes <= 9:
            p.error("--nodes must be 1 to 9")
        a.endpoints = [f"http://127.0.0.1:{9001 + 100 * k}" for k in range(1, REGION_COUNT + 1)]
        a.egress_endpoints = [[f"http://127.0.0.1:{9000 + 100 * k + i}" for i in range(1, a.nodes + 1)]
                              for k in range(1, REGION_COUNT + 1)]
    if a.ops < 0 or a.seconds <= 0 or a.rate < 0 or a.concurrency < 1 or a.prefixes < 1:
        p.error("--ops >= 0, --seconds > 0, --rate >= 0, --concurrency >= 1 and --prefixes >= 1")
    if not 0 < a.min_size <= a.max_size:
        p.error("need 0 < --min-size <= --max-size")
    for name in ("write_share", "home_reads", "home_writes"):
        if not 0 <= getattr(a, name) <= 1:
            p.error(f"--{name.replace('_', '-')} is a share between 0 and 1")
    return a


class Fatal(Exception):
    """The cluster is not there or not usable: the message says what to do."""


# ---------------------------------------------------------------- the admin API

def signed_get(endpoint, path, ak, sk, timeout=3.0):
    """GET endpoint+path signed with SigV4 (botocore's signer); returns (status, body bytes)."""
    req = AWSRequest(method="GET", url=endpoint + path)
    S3SigV4Auth(Credentials(ak, sk), "s3", "us-east-1").add_auth(req)
    prepared = req.prepare()
    r = urllib.request.Request(prepared.url, headers=dict(prepared.headers), method="GET")
    try:
        with urllib.request.urlopen(r, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def reachable(endpoint):
    try:
        with urllib.request.urlopen(endpoint + "/healthz", timeout=3.0):
            return True
    except urllib.error.HTTPError:
        return True  # it answers HTTP
    except (OSError, ValueError):
        return False


def error_code(body):
    text = body.decode("utf-8", "replace")
    for tag in ("Code", "code"):
        start = text.find(f"<{tag}>")
        if start >= 0:
            return text[start + len(tag) + 2:text.find(f"</{tag}>")]
    try:
        return json.loads(text).get("code", text[:120])
    except (ValueError, AttributeError):
        return text[:120]


def fetch_egress(endpoint, ak, sk):
    status, body = signed_get(endpoint, "/_tern/egress", ak, sk)
    if status == 200:
        return json.loads(body)
    code = error_code(body)
    if status == 404 and "NoTopology" in code:
        raise Fatal(f"the node at {endpoint} has no topology (a `make run-single` node?): "
                    "the demo needs the three regions of `make run`")
    if status == 403:
        raise Fatal(f"{endpoint} refused the credentials ({code}): pass --access-key/--secret-key "
                    "or set TERN_ROOT_ACCESS_KEY/TERN_ROOT_SECRET_KEY as for `make run`")
    raise Fatal(f"GET {endpoint}/_tern/egress answered {status} {code}")


EGRESS_FIELDS = ("usd", "full_usd", "bytes", "full_bytes", "read_bytes", "remote_read_bytes",
                 "replication_usd", "remote_read_usd", "repair_usd")


def egress_figures(doc):
    """The additive figures of one node's /_tern/egress document."""
    cause = doc["by_cause"]
    return {
        "usd": doc["total"]["usd"],
        "full_usd": doc["full_replication"]["usd"],
        "bytes": doc["total"]["bytes"],
        "full_bytes": doc["full_replication"]["written_bytes"],
        "read_bytes": doc["reads"]["bytes"],
        "remote_read_bytes": cause["remote_read"]["bytes"],
        "replication_usd": cause["replication"]["usd"],
        "remote_read_usd": cause["remote_read"]["usd"],
        "repair_usd": cause["repair"]["usd"],
    }


class Egress:
    """Sums every node's egress accounts, as the change since the run started."""

    def __init__(self, args, region_names):
        self.args = args
        self.region_names = region_names
        self.nodes = [(r, e) for r, group in enumerate(args.egress_endpoints) for e in group]
        self.baseline = {}
        self.latest = {}
        self.lock = threading.Lock()
        self.failures = 0

    def poll(self):
        for region, endpoint in self.nodes:
            try:
                figures = egress_figures(fetch_egress(endpoint, self.args.access_key,
                                                      self.args.secret_key))
            except (OSError, ValueError, KeyError, Fatal):
                with self.lock:
                    self.failures += 1
                continue
            with self.lock:
                base = self.baseline.get(endpoint)
                # Counters only grow while a node runs: a drop means it restarted from zero.
                if base is None or any(figures[f] < base[f] for f in EGRESS_FIELDS):
                    self.baseline[endpoint] = base = (figures if endpoint not in self.latest
                                                      else dict.fromkeys(EGRESS_FIELDS, 0))
                self.latest[endpoint] = {f: figures[f] - base[f] for f in EGRESS_FIELDS}

    def totals(self):
        with self.lock:
            total = dict.fromkeys(EGRESS_FIELDS, 0)
            per_region = [0.0] * REGION_COUNT
            for region, endpoint in self.nodes:
                d = self.latest.get(endpoint)
                if d is None:
                    continue
                for f in EGRESS_FIELDS:
                    total[f] += d[f]
                per_region[region] += d["usd"]
        total["ratio"] = total["usd"] / total["full_usd"] if total["full_usd"] > 0 else None
        rb = total["read_bytes"]
        total["local_ratio"] = (None if rb <= 0
                                else max(0.0, 1.0 - total["remote_read_bytes"] / rb))
        total["per_region_usd"] = per_region
        return total


# ---------------------------------------------------------------- the workload

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.started = 0  # operations claimed
        self.puts = self.gets = 0
        self.put_bytes = self.get_bytes = 0
        self.home_gets = 0
        self.missing = 0  # GETs of a key that had not reached that region yet
        self.errors = 0
        self.consecutive_errors = 0
        self.last_error = ""
        self.lags = []  # seconds until a marker was readable in every other region
        self.lag_timeouts = 0

    @property
    def done(self):
        return self.puts + self.gets + self.missing + self.errors

    def error(self, what):
        with self.lock:
            self.errors += 1
            self.consecutive_errors += 1
            self.last_error = what


def s3_clients(args):
    cfg = Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                 retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=2,
                 read_timeout=30, max_pool_connections=args.concurrency + 4)
    session = boto3.session.Session()
    return [session.client("s3", endpoint_url=e, region_name="us-east-1",
                           aws_access_key_id=args.access_key,
                           aws_secret_access_key=args.secret_key, config=cfg)
            for e in args.endpoints]


def describe(exc):
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', '?')}: {err.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"


class Workload:
    def __init__(self, args, clients, region_names, stats):
        self.args = args
        self.clients = clients
        self.names = region_names
        self.stats = stats
        self.stop = threading.Event()
        self.keys = []  # (key, prefix index)
        self.keys_lock = threading.Lock()
        self.start = time.monotonic()
        self.deadline = self.start + args.seconds
        # Prefix p's home is region p mod 3; the name says which, for `ternctl placement explain`.
        self.prefixes = [f"{region_names[p % REGION_COUNT]}-p{p:02d}" for p in range(args.prefixes)]

    def home(self, prefix):
        return prefix % REGION_COUNT

    def pick_region(self, rng, home, home_share):
        if rng.random() < home_share:
            return home
        return rng.choice([r for r in range(REGION_COUNT) if r != home])

    def claim(self):
        """Takes the next operation, waiting for its turn under --rate; False when done."""
        with self.stats.lock:
            if self.stop.is_set() or self.stats.started >= self.args.ops:
                return False
            n = self.stats.started
            self.stats.started += 1
        if self.args.rate > 0:
            delay = self.start + n / self.args.rate - time.monotonic()
            if delay > 0 and self.stop.wait(delay):
                return False
        return time.monotonic() < self.deadline

    def worker(self, wid, seed):
        rng = random.Random(seed)
        seq = 0
        lo, hi = math.log(self.args.min_size), math.log(self.args.max_size)
        while self.claim():
            with self.keys_lock:
                have = len(self.keys)
                pick = self.keys[rng.randrange(have)] if have else None
            try:
                if pick is None or rng.random() < self.args.write_share:
                    prefix = rng.randrange(len(self.prefixes))
                    region = self.pick_region(rng, self.home(prefix), self.args.home_writes)
                    size = int(math.exp(rng.uniform(lo, hi)))
                    key = f"{self.prefixes[prefix]}/w{wid}-{seq:06d}"
                    seq += 1
                    self.clients[region].put_object(Bucket=self.args.bucket, Key=key,
                                                    Body=rng.randbytes(size))
                    with self.keys_lock:
                        self.keys.append((key, prefix))
                    with self.stats.lock:
                        self.stats.puts += 1
                        self.stats.put_bytes += size
                        self.stats.consecutive_errors = 0
                else:
                    key, prefix = pick
                    home = self.home(prefix)
                    region = self.pick_region(rng, home, self.args.home_reads)
                    try:
                        got = self.clients[region].get_object(Bucket=self.args.bucket, Key=key)
                        n = len(got["Body"].read())
                    except ClientError as e:
                        if e.response.get("Error", {}).get("Code") != "NoSuchKey":
                            raise
                        with self.stats.lock:  # written elsewhere, not replicated here yet
                            self.stats.missing += 1
                            self.stats.consecutive_errors = 0
                        continue
                    with self.stats.lock:
                        self.stats.gets += 1
                        self.stats.get_bytes += n
                        self.stats.home_gets += region == home
                        self.stats.consecutive_errors = 0
            except (ClientError, BotoCoreError, OSError) as e:
                self.stats.error(f"{self.names[region]}: {describe(e)}")
                time.sleep(0.2)

    def lag_prober(self):
        """A marker PUT in one region (in turn), timed until every other region serves it."""
        s3, bucket, seq = self.clients, self.args.bucket, 0
        while not self.stop.wait(self.args.lag_interval if seq else 0.5):
            src = seq % REGION_COUNT
            key = f"_lag/{self.names[src]}-{os.getpid()}-{seq}"
            body = f"{seq} {time.time():.6f}".encode()
            seq += 1
            try:
                s3[src].put_object(Bucket=bucket, Key=key, Body=body)
            except (ClientError, BotoCoreError, OSError) as e:
                self.stats.error(f"lag marker in {self.names[src]}: {describe(e)}")
                continue
            t0 = time.monotonic()
            lag = self.wait_visible(key, body, [r for r in range(REGION_COUNT) if r != src], t0)
            with self.stats.lock:
                if lag is None:
                    self.stats.lag_timeouts += 1
                else:
                    self.stats.lags.append(lag)

    def wait_visible(self, key, body, regions, t0, stop_too=True):
        """Seconds from t0 until every region in regions serves key with body; None on timeout."""
        pending = set(regions)
        while pending:
            if time.monotonic() - t0 > self.args.lag_timeout or (stop_too and self.stop.is_set()):
                return None
            for r in list(pending):
                try:
                    got = self.clients[r].get_object(Bucket=self.args.bucket, Key=key)
                    if got["Body"].read() == body:
                        pending.discard(r)
                except (ClientError, BotoCoreError, OSError):
                    pass
            if pending:  # fine-grained at first, gentler as the wait grows
                time.sleep(min(0.1, 0.01 + 0.1 * (time.monotonic() - t0)))
        return time.monotonic() - t0

    def settle(self, timeout):
        """After the workload: a marker in each region, waited for everywhere (bounded), so the
        egress figures include the run's replication. True if everything arrived."""
        t0 = time.monotonic()
        ok = True
        markers = []
        for src in range(REGION_COUNT):
            key = f"_lag/settle-{self.names[src]}-{os.getpid()}"
            body = f"settle {time.time():.6f}".encode()
            try:
                self.clients[src].put_object(Bucket=self.args.bucket, Key=key, Body=body)
                markers.append((src, key, body))
            except (ClientError, BotoCoreError, OSError):
                ok = False
        saved = self.args.lag_timeout
        self.args.lag_timeout = timeout
        try:
            for src, key, body in markers:
                others = [r for r in range(REGION_COUNT) if r != src]
                ok = self.wait_visible(key, body, others, t0, stop_too=False) is not None and ok
        finally:
            self.args.lag_timeout = saved
        return ok


# ---------------------------------------------------------------- output

def usd(v):
    return f"${v:.6f}" if abs(v) < 1 else f"${v:,.2f}"


def size(n):
    return f"{n / MIB:.1f} MiB" if n >= MIB else f"{n / KIB:.1f} KiB"


def percentile(values, q):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def secs(v):
    return "-" if v is None else f"{v:.2f}s"


def progress_line(args, stats, eg, elapsed):
    with stats.lock:
        done, errors = stats.done, stats.errors
        lags = list(stats.lags)
    ratio = "-" if eg["ratio"] is None else f"{eg['ratio']:.2f}"
    local = "-" if eg["local_ratio"] is None else f"{100 * eg['local_ratio']:.1f}%"
    line = (f"{elapsed:4.0f}s ops {done}/{args.ops} | egress {usd(eg['usd'])} vs full repl. "
            f"{usd(eg['full_usd'])} = {ratio}x | local reads {local} | lag "
            f"{secs(lags[-1] if lags else None)} p99 {secs(percentile(lags, 0.99))}")
    if errors:
        line += f" | errors {errors}"
    return line


def summary(args, stats, eg, elapsed, names, settled, interrupted):
    with stats.lock:
        s = stats
        lags = list(s.lags)
        out = [f"tern demo {'(interrupted) ' if interrupted else ''}"
               f"{s.done} ops in {elapsed:.1f} s: {s.puts} PUTs ({size(s.put_bytes)}), "
               f"{s.gets} GETs ({size(s.get_bytes)}), {s.errors} errors"]
        gets_all = s.gets
        home_gets, missing, timeouts, last_error = s.home_gets, s.missing, s.lag_timeouts, s.last_error
    ratio = "-" if eg["ratio"] is None else f"{eg['ratio']:.3f}"
    out.append(f"  egress this run, all regions  {usd(eg['usd'])} ({size(eg['bytes'])} sent: "
               f"replication {usd(eg['replication_usd'])}, remote reads "
               f"{usd(eg['remote_read_usd'])}, repair {usd(eg['repair_usd'])})")
    out.append("    by region sent             " + ", ".join(
        f"{n} {usd(v)}" for n, v in zip(names, eg["per_region_usd"])))
    out.append(f"  full replication would pay   {usd(eg['full_usd'])} "
               f"(every write, {size(eg['full_bytes'])}, copied to every other region)")
    saving = eg["full_usd"] - eg["usd"]
    out.append(f"  ratio tern / full            {ratio} (saving {usd(saving)})")
    local = "-" if eg["local_ratio"] is None else f"{100 * eg['local_ratio']:.1f}%"
    out.append(f"  local reads                  {local} of the bytes read were served from a "
               "copy in the reader's region")
    home = f"{100 * home_gets / gets_all:.1f}%" if gets_all else "-"
    out.append(f"  workload skew                {home} of GETs in the key's home region; "
               f"{missing} GETs found no copy yet (404)")
    out.append(f"  replication lag              {len(lags)} markers: last "
               f"{secs(lags[-1] if lags else None)}, p50 {secs(percentile(lags, 0.5))}, "
               f"p99 {secs(percentile(lags, 0.99))}, max {secs(max(lags) if lags else None)}; "
               f"{timeouts} not everywhere within {args.lag_timeout:.0f}s")
    if not settled:
        out.append("  (replication had not settled: the egress figures may miss the last writes)")
    if last_error:
        out.append(f"  last error: {last_error}")
    return "\n".join(out)


# ---------------------------------------------------------------- main

def connect(args):
    names = []
    for e in args.endpoints:
        if not reachable(e):
            raise Fatal(f"no tern region answers at {e}: start it with `make run` in another terminal")
        names.append(fetch_egress(e, args.access_key, args.secret_key)["local_region"])
    if len(set(names)) != REGION_COUNT:
        raise Fatal(f"the endpoints {', '.join(args.endpoints)} are regions {', '.join(names)}: "
                    f"the demo needs {REGION_COUNT} different regions")
    return names


def create_bucket(args, clients, workload):
    try:
        clients[0].create_bucket(Bucket=args.bucket)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou",
                                                           "BucketAlreadyExists"):
            raise Fatal(f"cannot create bucket {args.bucket}: {describe(e)}")
    except BotoCoreError as e:
        raise Fatal(f"cannot create bucket {args.bucket}: {describe(e)}")
    # The bucket must reach every region before they take writes for it.
    deadline = time.monotonic() + 30
    for c, e in zip(clients, args.endpoints):
        while True:
            try:
                c.head_bucket(Bucket=args.bucket)
                break
            except (ClientError, BotoCoreError):
                if time.monotonic() > deadline:
                    raise Fatal(f"bucket {args.bucket} did not reach {e} within 30 s: "
                                "is geo-replication running?")
                time.sleep(0.1)


def on_sigterm(signum, frame):
    """SIGTERM ends the run as Ctrl-C does: summary, then exit."""
    raise KeyboardInterrupt


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    tty = sys.stdout.isatty()
    stats = Stats()
    workload = None
    try:
        names = connect(args)
        clients = s3_clients(args)
        egress = Egress(args, names)
        egress.poll()  # the baseline
        workload = Workload(args, clients, names, stats)
        create_bucket(args, clients, workload)
    except Fatal as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        return 130

    print(f"demo: {args.ops} ops for at most {args.seconds:.0f} s, {args.concurrency} clients, "
          f"bucket {args.bucket}, objects {size(args.min_size)}..{size(args.max_size)}; "
          f"regions {', '.join(f'{n} {e}' for n, e in zip(names, args.endpoints))}")
    workload.start = time.monotonic()
    workload.deadline = workload.start + args.seconds
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    threads = [threading.Thread(target=workload.worker, args=(w, seed + w), daemon=True)
               for w in range(args.concurrency)]
    threads.append(threading.Thread(target=workload.lag_prober, daemon=True))
    stop_polling = threading.Event()

    def poller():
        while not stop_polling.wait(0.5):
            egress.poll()

    poll_thread = threading.Thread(target=poller, daemon=True)
    t0 = time.monotonic()
    for t in threads:
        t.start()
    poll_thread.start()

    interrupted = failed = False
    settled = True
    last_print = 0.0
    width = 0

    def show(line, final=False):
        nonlocal width
        if tty:
            # Cut to the terminal's width: a wrapped line would not be overwritten by the next.
            line = line[:max(20, shutil.get_terminal_size().columns - 1)]
            sys.stdout.write("\r" + line.ljust(width) + ("\n" if final else ""))
            width = len(line)
        else:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()

    try:
        while any(t.is_alive() for t in threads[:-1]):
            time.sleep(0.1)
            now = time.monotonic()
            with stats.lock:
                lost = stats.consecutive_errors >= 20
            if lost:
                failed = True
                break
            if now - last_print >= (0.5 if tty else 5.0):
                last_print = now
                show(progress_line(args, stats, egress.totals(), now - t0))
        elapsed = time.monotonic() - t0
        workload.stop.set()
        if not failed:
            if tty:
                show(progress_line(args, stats, egress.totals(), elapsed) + "  settling...")
            settled = workload.settle(timeout=30)
    except KeyboardInterrupt:
        interrupted = True
        elapsed = time.monotonic() - t0
        settled = False
        workload.stop.set()
    try:
        stop_polling.set()
        for t in threads:
            t.join(timeout=3)
        egress.poll()
        eg = egress.totals()
        show(progress_line(args, stats, eg, elapsed), final=True)
        print(summary(args, stats, eg, elapsed, names, settled, interrupted))
    except KeyboardInterrupt:
        print("\ndemo: interrupted", file=sys.stderr)
        return 130
    if failed:
        print(f"demo: stopped after 20 failures in a row (is the cluster still running?): "
              f"{stats.last_error}", file=sys.stderr)
        return 1
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
