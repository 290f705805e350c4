"""Harness for the WAN geo-replication tests (issue 5): three regions of three nodes each, every
cross-region link through a fault proxy (tests/tools/tcpproxy).

Regions. Each region is a clusterlib.Cluster (three real ternd processes in one Raft group over
mutual TLS, fdatasync off and short election timeouts as clusterlib sets them), its Raft links
through that cluster's own proxy. Its nodes run with --region NAME --topology FILE.

The WAN. One more tcpproxy per source region SRC holds a route per destination region DST and
node i of DST, named "SRC>DST/i", forwarding to node i's S3 listener. Each region gets its OWN
topology file, identical in regions, prices and RTTs; only the s3_endpoints differ: the region's
own list names its nodes directly, every other region DST's list names the routes SRC>DST/1, /2,
/3 in that order. Whatever SRC sends to DST (the shipper, to DST's first endpoint or, once it
fails over, the next ones; remote reads later) therefore crosses routes SRC>DST/*: a2b is what
SRC sent, b2a what DST answered. cut_link(a, b) cuts both directions of a>b/* and b>a/* (a fully
cut route also refuses new connections: a partition); wan_bytes() sums a route set's counters.

Every wait polls a condition with a deadline (ternlib.wait_until) and every loop is bounded.
Logs live under BASE/<region>/logs; Geo.report() prints their tails.
"""

import atexit
import contextlib
import hashlib
import json
import os
import random
import socket
import threading
import time

from botocore.exceptions import BotoCoreError, ClientError

import clusterlib
import ternlib
from ternlib import wait_until

REGIONS = ("us-east", "eu-west", "ap-southeast")
NODES = (1, 2, 3)
# The list prices of scripts/run-regions.sh.
STORAGE_USD = {"us-east": 0.023, "eu-west": 0.023, "ap-southeast": 0.025}
EGRESS_USD = {
    "us-east": {"eu-west": 0.02, "ap-southeast": 0.08},
    "eu-west": {"us-east": 0.02, "ap-southeast": 0.08},
    "ap-southeast": {"us-east": 0.09, "eu-west": 0.09},
}
# The WAN every test starts from: one-way delay per link in ms (each route delays both its
# directions, so the RTT is twice this) and a bandwidth bound per route and direction.
DELAY_MS = {frozenset(("us-east", "eu-west")): 20, frozenset(("us-east", "ap-southeast")): 40,
            frozenset(("eu-west", "ap-southeast")): 30}
BANDWIDTH_BPS = 16 * ternlib.MIB

_live = []  # every Geo not yet closed, killed at interpreter exit if a test run was cut short


@atexit.register
def _kill_leftovers():
    for geo in list(_live):
        geo.kill_all()


class PortPool:
    """Listening ports for a whole deployment (about 60 of them): distinct, and below the
    kernel's ephemeral range, so neither another free_port() of ours nor an outgoing connection
    (a proxy dialing a node, a shipper) can take one between its choice and a (re)start."""

    def __init__(self, seed=None):
        try:
            with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
                low = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            low = 32768
        self.low, self.high = 10000, max(10001, min(low, 65536))
        self.rng = random.Random(seed)
        self.used = set()

    def __call__(self):
        for _ in range(1000):
            port = self.rng.randrange(self.low, self.high)
            if port in self.used:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            self.used.add(port)
            return port
        raise RuntimeError("no free port below the ephemeral range")



@contextlib.contextmanager
def patched(module, name, value):
    saved = getattr(module, name)
    setattr(module, name, value)
    try:
        yield value
    finally:
        setattr(module, name, saved)


def delay_ms(a, b):
    return DELAY_MS[frozenset((a, b))]


def topology(own_region, own_endpoints, routed_endpoints):
    """The topology document region own_region's nodes load. routed_endpoints: {region: [url]}
    for the other regions (the WAN routes)."""
    regions = []
    for r in REGIONS:
        eps = own_endpoints if r == own_region else routed_endpoints[r]
        regions.append({"name": r, "storage_usd_per_gb_month": STORAGE_USD[r],
                        "s3_endpoints": list(eps)})
    return {
        "regions": regions,
        "egress_usd_per_gb": EGRESS_USD,
        "rtt_ms": {a: {b: 2 * delay_ms(a, b) for b in REGIONS if b != a} for a in REGIONS},
    }


class RegionNode(clusterlib.Node):
    """A clusterlib node of a named region (clusterlib starts every node in region "itest")."""

    def argv(self):
        argv = super().argv()
        argv[argv.index("--region") + 1] = self.cluster.region
        return argv


class RegionGroup(clusterlib.Cluster):
    """One region: a clusterlib cluster of three nodes whose nodes load this region's topology."""

    def __init__(self, base_dir, region, topology_path):
        self.region = region
        self.topology_path = str(topology_path)
        super().__init__(base_dir, size=len(NODES),
                         extra_args=["--topology", self.topology_path])
        for n in self.nodes.values():
            n.__class__ = RegionNode

    def any_node(self, rng=random):
        live = self.live()
        assert live, f"no live node in {self.region}"
        return rng.choice(live)

    def leader_node(self, timeout_s=20.0):
        lid, _ = self.leader(timeout_s)
        return self.nodes[lid]


def route(src, dst, i):
    return f"{src}>{dst}/{i}"


class Geo:
    def __init__(self, base_dir):
        self.base_dir = str(base_dir)
        self.closed = False
        self.groups = {}
        self.wan = {}
        self.ports = PortPool()
        _live.append(self)
        try:
            # clusterlib picks its ports with ternlib.free_port().
            with patched(ternlib, "free_port", self.ports):
                self._build()
        except BaseException:
            self.close()
            raise

    def _build(self):
        for r in REGIONS:
            d = os.path.join(self.base_dir, r)
            self.groups[r] = RegionGroup(d, r, os.path.join(d, "topology.json"))
        for src in REGIONS:
            routes = {}
            for dst in REGIONS:
                if dst != src:
                    for i in NODES:
                        routes[route(src, dst, i)] = (self.ports(),
                                                      self.groups[dst].nodes[i].s3_port)
            self.wan[src] = clusterlib.Proxy(
                routes, os.path.join(self.base_dir, src, "logs", "wan-proxy.log"))
        for r, g in self.groups.items():
            routed = {dst: [f"http://127.0.0.1:{self.wan[r].routes[route(r, dst, i)][0]}"
                            for i in NODES] for dst in REGIONS if dst != r}
            own = [g.nodes[i].endpoint for i in NODES]
            with open(g.topology_path, "w") as f:
                json.dump(topology(r, own, routed), f, indent=1)

    # -- processes

    def start(self, timeout_s=clusterlib.START_TIMEOUT_S):
        self.set_baseline()
        for g in self.groups.values():
            g.start(wait=False)
        for g in self.groups.values():
            for n in g.nodes.values():
                n.wait_ready(timeout_s)
        self.wait_leaders()
        return self

    def wait_leaders(self, timeout_s=30.0):
        return {r: g.leader(timeout_s) for r, g in self.groups.items()}

    def nodes(self):
        return [n for g in self.groups.values() for n in g.nodes.values()]

    def check_alive(self):
        for g in self.groups.values():
            g.check_alive()
        for src, p in self.wan.items():
            assert p.proc.poll() is None, f"the WAN proxy of {src} exited ({p.proc.returncode})"

    def unexpected_exits(self):
        return [(g.region, i, rc) for g in self.groups.values() for i, rc in g.unexpected_exits()]

    def restore(self, timeout_s=clusterlib.START_TIMEOUT_S):
        """Back to the baseline: every link healed with the baseline delay and bandwidth, every
        node that a test stopped or killed running again, a leader in every region."""
        for p in self.wan.values():
            assert p.proc.poll() is None, f"a WAN proxy exited ({p.proc.returncode})"
        self.set_baseline()
        restarted = []
        for n in self.nodes():
            if n.paused:
                n.resume()
            if not n.running():
                n.start()
                restarted.append(n)
        for n in restarted:
            n.wait_ready(timeout_s)
        self.wait_leaders()

    def close(self):
        """Stops every process (regions in parallel); returns complaints (unexpected exits,
        unclean SIGTERM exits). Safe to call twice, and after a failed __init__."""
        if self.closed:
            return []
        self.closed = True
        errors = []
        lock = threading.Lock()

        def close_group(g):
            try:
                errs = g.close()
            except Exception as e:  # make sure nothing is left running, then report
                errs = [f"{g.region}: close failed: {type(e).__name__}: {e}"]
                for n in g.nodes.values():
                    n.kill()
            with lock:
                errors.extend(f"{g.region}: {e}" for e in errs)

        threads = [threading.Thread(target=close_group, args=(g,), daemon=True)
                   for g in self.groups.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=90)
        for p in self.wan.values():
            try:
                p.close()
            except Exception as e:
                errors.append(f"WAN proxy close: {type(e).__name__}: {e}")
        self.kill_all()  # anything a stuck close left behind
        if self in _live:
            _live.remove(self)
        return errors

    def kill_all(self):
        for n in self.nodes():
            if n.proc is not None and n.proc.poll() is None:
                n.kill()
        for g in self.groups.values():
            if g.proxy.proc.poll() is None:
                g.proxy.proc.kill()
                g.proxy.proc.wait(timeout=10)
        for p in self.wan.values():
            if p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait(timeout=10)

    def report(self, lines=20):
        out = []
        for r, g in self.groups.items():
            out.append(f"################ region {r}")
            out.append(g.report(lines))
        return "\n".join(out)

    # -- the WAN

    def routes(self, src, dst):
        return [route(src, dst, i) for i in NODES]

    def _each(self, src, dst, line):
        for name in self.routes(src, dst):
            self.wan[src].cmd(line.format(name))

    def set_delay(self, a, b, ms):
        """One-way delay of the link a-b (both its route sets, both directions)."""
        self._each(a, b, f"delay {{}} {ms}")
        self._each(b, a, f"delay {{}} {ms}")

    def set_bandwidth(self, src, dst, bytes_per_s):
        """Bandwidth bound of the routes src>dst/* (each direction of each connection)."""
        self._each(src, dst, f"bandwidth {{}} {bytes_per_s}")

    def cut_link(self, a, b):
        """Partitions a from b: both directions of a>b/* and b>a/*."""
        self._each(a, b, "cut {}")
        self._each(b, a, "cut {}")

    def heal_link(self, a, b):
        self._each(a, b, "heal {}")
        self._each(b, a, "heal {}")

    def isolate(self, region):
        for other in REGIONS:
            if other != region:
                self.cut_link(region, other)

    def heal_all(self):
        for a in REGIONS:
            for b in REGIONS:
                if a < b:
                    self.heal_link(a, b)

    def set_baseline(self):
        self.heal_all()
        for a in REGIONS:
            for b in REGIONS:
                if a != b:
                    self._each(a, b, f"delay {{}} {delay_ms(a, b)}")
                    self.set_bandwidth(a, b, BANDWIDTH_BPS)

    def wan_bytes(self, src, dst, direction="a2b"):
        """Bytes the routes src>dst/* carried in direction (a2b: sent by src) since start."""
        return sum(self.wan[src].stats(name)[f"bytes_{direction}"]
                   for name in self.routes(src, dst))

    # -- admin

    def egress_bytes(self, src, dst, cause="replication"):
        """Egress bytes src -> dst of cause, summed over src's running nodes (each transfer is
        recorded by the node that made it: for replication, src's leader at the time)."""
        total = 0
        for n in self.groups[src].live():
            r = n.signer().request("GET", "/_tern/egress", timeout_s=5.0)
            assert r.status == 200, f"{src} node {n.id}: GET /_tern/egress -> {r!r}"
            doc = json.loads(r.body)
            assert doc["local_region"] == src, doc["local_region"]
            total += sum(f["bytes"] for f in doc["flows"]
                         if f["from"] == src and f["to"] == dst and f["cause"] == cause)
        return total

    def set_policy(self, region, bucket, policy):
        node = self.groups[region].any_node()
        body = json.dumps(policy).encode()
        r = node.signer().request("PUT", f"/_tern/buckets/{bucket}/policy", body=body,
                                  headers={"Content-Type": "application/json"}, timeout_s=10.0)
        assert r.status == 200, f"PUT policy of {bucket} in {region}: {r!r}"

    def get_policy(self, region, bucket):
        node = self.groups[region].any_node()
        r = node.signer().request("GET", f"/_tern/buckets/{bucket}/policy", timeout_s=5.0)
        return json.loads(r.body) if r.status == 200 else None

    # -- S3

    def client(self, region, node=None, read_timeout_s=10.0):
        g = self.groups[region]
        n = g.any_node() if node is None else g.nodes[node]
        return n.client(read_timeout_s)

    def new_bucket(self, region, prefix="geo", timeout_s=30.0):
        """A bucket created in region, waited for until every region lists it."""
        name = ternlib.unique_name(prefix)
        self.client(region).create_bucket(Bucket=name)

        def everywhere():
            return all(bucket_exists(self.client(r), name) for r in REGIONS)
        wait_until(everywhere, timeout_s, interval_s=0.1, what=f"bucket {name} in every region")
        return name


# ----------------------------------------------------------------------------
# Reads and writes that report rather than raise
# ----------------------------------------------------------------------------

ABSENT = "absent"


def bucket_exists(client, bucket):
    try:
        client.head_bucket(Bucket=bucket)
        return True
    except (ClientError, BotoCoreError, OSError):
        return False


def read(client, bucket, key):
    """(bytes, etag) of an object, ABSENT if it does not exist, None on any other failure
    (a timeout, a 503 during an election): the caller polls again."""
    try:
        r = client.get_object(Bucket=bucket, Key=key)
        return r["Body"].read(), r["ETag"].strip('"')
    except ClientError as e:
        if ternlib.error_code(e) in ("NoSuchKey", "404"):
            return ABSENT
        return None
    except (BotoCoreError, OSError):
        return None


def md5(data):
    return hashlib.md5(data).hexdigest()


class Write:
    __slots__ = ("region", "node", "key", "body", "value", "status", "start", "end", "error")

    def __repr__(self):
        return (f"<{self.status} PUT {self.key} in {self.region}/node{self.node} "
                f"{len(self.body)}B {self.value[:8]} [{self.start:.3f}, {self.end:.3f}]"
                f"{' ' + self.error if self.error else ''}>")


class Writes:
    """Every PUT a test made, with its outcome: "ok" (acknowledged), "fail" (certainly not
    applied) or "unknown". Times are wall-clock (time.time(), the clock ternd's HLC reads)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.all = []

    def put(self, region, node, bucket, key, body, read_timeout_s=10.0):
        w = Write()
        w.region, w.node, w.key, w.body, w.value = region, node.id, key, body, md5(body)
        w.error = None
        w.start = time.time()
        try:
            node.client(read_timeout_s).put_object(Bucket=bucket, Key=key, Body=body)
            w.status = "ok"
        except (BotoCoreError, ClientError, OSError) as e:
            w.status = clusterlib.classify_error(e)
            w.error = clusterlib.error_text(e)
        w.end = time.time()
        with self.lock:
            self.all.append(w)
        return w

    def acked(self):
        with self.lock:
            return [w for w in self.all if w.status == "ok"]

    def of_key(self, key):
        with self.lock:
            return [w for w in self.all if w.key == key]

    def keys(self):
        with self.lock:
            return sorted({w.key for w in self.all})

    def summary(self):
        with self.lock:
            counts = {}
            for w in self.all:
                counts[(w.region, w.status)] = counts.get((w.region, w.status), 0) + 1
            errors = sorted({w.error for w in self.all if w.error})[:6]
        return f"writes by (region, status): {counts}; errors: {errors}"


def lww_complaints(writes, key, winner_value, slack_s=0.002):
    """Last-writer-wins by hybrid logical clock, checked against wall-clock times: a version's
    physical part is at least the time its PUT arrived and at most the time it was
    acknowledged (every node reads the same clock), so the winner cannot have been
    acknowledged before any other acknowledged write of the key started. Returns complaints."""
    ws = [w for w in writes.of_key(key) if w.status != "fail"]
    winners = [w for w in ws if w.value == winner_value]
    if not winners:
        return [f"{key}: the value everywhere ({winner_value}) is no write of it: {ws}"]
    latest_end = max(w.end for w in winners)
    out = []
    for w in ws:
        if w.status == "ok" and w.value != winner_value and latest_end + slack_s < w.start:
            out.append(f"{key}: {winners} won, but {w} started after it was acknowledged")
    return out
