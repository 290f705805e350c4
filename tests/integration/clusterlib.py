"""Harness for region-group tests: N ternd processes joined by Raft over mutual TLS, with a
fault proxy (tests/tools/tcpproxy) on every directed peer link.

Topology. Node i's --peers entry for node j points at the proxy route "i>j", which forwards
to node j's --peer-listen. The peer transport sends on connections a node dialed and
receives on connections dialed to it, so route i>j carries i's messages to j (a2b) and
nothing but TLS handshake bytes back (b2a). Cutting both directions of every route into and
out of node L (isolate(L)) partitions L from everyone; cut_link(i, j) drops i's messages to j
only. A spare node k (added later with --join) dials the members through routes "k>j"; the
members learn k's address from the CONFIG entry, which names the single route ">k".

Every process is real: ternd with real sockets and real TLS (a throwaway CA and one
certificate per node id, made by scripts/gen-test-ca.sh, subject CN = the id), the proxy, and
boto3 clients with short timeouts and no retries (tests count retries themselves). Every wait
polls a condition with a deadline (ternlib.wait_until); every loop is bounded.

Logs: each start of node i writes BASE/logs/node-i-START.log; Cluster.report() prints their
tails (the test's fixture does so at teardown, which pytest shows only for failing tests).
"""

import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time

import boto3
import botocore.config
from botocore.exceptions import (BotoCoreError, ClientError, ConnectTimeoutError,
                                 EndpointConnectionError)

import ternlib
from linearizability import Op
from ternlib import wait_until

REGION_NAME = "itest"
# Raft timing for the tests: generous against a loaded 2-core machine (a scheduling hiccup of a
# few hundred ms must not look like a dead leader), short enough that a failover takes ~2 s.
ELECTION_TIMEOUT_MS = int(os.environ.get("TERN_CLUSTER_ELECTION_MS", "1000"))
HEARTBEAT_MS = int(os.environ.get("TERN_CLUSTER_HEARTBEAT_MS", "100"))
# fdatasync is off by default: the tests kill processes, not machines, and the page cache
# survives SIGKILL. TERN_CLUSTER_SYNC=1 runs the same tests with every sync on.
SYNC = os.environ.get("TERN_CLUSTER_SYNC", "0") == "1"
STATUS_TIMEOUT_S = 2.0
START_TIMEOUT_S = 30.0


def build_dir():
    return os.environ.get("TERN_BUILD_DIR") or os.path.dirname(ternlib.ternd_binary())


def proxy_binary():
    path = os.path.join(build_dir(), "tcpproxy")
    if not os.access(path, os.X_OK):
        path = "/work/main/build/tcpproxy"
    return path


def ternd_help():
    """`ternd --help` text (for feature checks), or "" if it cannot run."""
    try:
        out = subprocess.run([ternlib.ternd_binary(), "--help"], capture_output=True,
                             timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (out.stdout + out.stderr).decode("utf-8", "replace")


def make_certs(directory, ids):
    """A throwaway cluster CA and a certificate per node id (CN = id) via gen-test-ca.sh."""
    script = os.path.join(ternlib.source_dir(), "scripts", "gen-test-ca.sh")
    env = dict(os.environ)
    env["PATH"] = "/usr/bin:/bin:" + env.get("PATH", "")
    r = subprocess.run(["/bin/sh", script, directory] + [str(i) for i in ids], env=env,
                       capture_output=True, timeout=60, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"gen-test-ca.sh failed ({r.returncode}): {r.stderr.decode()}")


def s3_client(endpoint, connect_timeout_s=1.0, read_timeout_s=10.0):
    """boto3 client with short timeouts and exactly one attempt per call."""
    cfg = botocore.config.Config(
        region_name=ternlib.REGION,
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"total_max_attempts": 1},
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        max_pool_connections=4,
        tcp_keepalive=False,
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint,
                                          aws_access_key_id=ternlib.ACCESS_KEY,
                                          aws_secret_access_key=ternlib.SECRET_KEY, config=cfg)


def classify_error(exc):
    """What a failed write means: "fail" (certainly not applied: refused before sending, or a
    4xx) or "unknown" (a timeout, a 5xx, a connection lost after the request went out)."""
    if isinstance(exc, ClientError):
        status = ternlib.http_status(exc) or 0
        return "fail" if 400 <= status < 500 else "unknown"
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
        return "fail"  # no connection: nothing was sent
    return "unknown"


def error_text(exc):
    if isinstance(exc, ClientError):
        return f"{ternlib.http_status(exc)} {ternlib.error_code(exc)}"
    return type(exc).__name__


# ----------------------------------------------------------------------------
# The fault proxy
# ----------------------------------------------------------------------------

class Proxy:
    """One tcpproxy process with named routes and its control connection."""

    def __init__(self, routes, log_path):
        """routes: {name: (listen_port, target_port)} on 127.0.0.1."""
        self.routes = dict(routes)
        self.control_port = ternlib.free_port()
        argv = [proxy_binary(), "--control", f"127.0.0.1:{self.control_port}"]
        for name, (listen, target) in sorted(self.routes.items()):
            argv += ["--route", f"{name}=127.0.0.1:{listen}->127.0.0.1:{target}"]
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.log)
        line = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(timeout=10)
        if not line or line[0] != b"ready\n":
            self.proc.kill()
            raise RuntimeError(f"tcpproxy not ready ({line!r}); see {log_path}")
        self.lock = threading.Lock()
        self.control = socket.create_connection(("127.0.0.1", self.control_port), timeout=10)
        self.control_file = self.control.makefile("rb")

    def cmd(self, line):
        with self.lock:
            self.control.sendall(line.encode() + b"\n")
            reply = self.control_file.readline().decode().rstrip("\n")
        if not reply.startswith("ok"):
            raise RuntimeError(f"tcpproxy: {line!r} -> {reply!r}")
        return reply

    def stats(self, route):
        reply = self.cmd(f"stats {route}")
        return {k: int(v) for k, v in (f.split("=") for f in reply[3:].split())}

    def close(self):
        if self.proc.poll() is None:
            try:
                self.cmd("quit")
                self.proc.wait(timeout=10)
            except (OSError, RuntimeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.control_file.close()
        self.control.close()
        self.proc.stdout.close()
        self.log.close()


# ----------------------------------------------------------------------------
# One node
# ----------------------------------------------------------------------------

class Node:
    def __init__(self, cluster, node_id, join=False):
        self.cluster = cluster
        self.id = node_id
        self.join = join
        self.s3_port = ternlib.free_port()
        self.peer_port = ternlib.free_port()
        self.data_dir = os.path.join(cluster.base_dir, f"data-{node_id}")
        self.proc = None
        self.starts = 0
        self.log_paths = []
        self.paused = False
        # Set by kill()/stop(): the process is down on purpose (teardown does not complain).
        self.down_on_purpose = False
        self._clients = {}
        self._lock = threading.Lock()

    def __repr__(self):
        return f"<node {self.id} s3={self.s3_port} peer={self.peer_port}>"

    @property
    def hostport(self):
        return f"127.0.0.1:{self.s3_port}"

    @property
    def endpoint(self):
        return f"http://{self.hostport}"

    @property
    def peer_address(self):
        return f"127.0.0.1:{self.peer_port}"

    def argv(self):
        c = self.cluster
        cert_dir = c.cert_dir
        argv = [ternlib.ternd_binary(),
                "--region", REGION_NAME,
                "--node-id", str(self.id),
                "--s3-listen", self.hostport,
                "--data-dir", self.data_dir,
                "--peer-listen", self.peer_address,
                "--peers", c.peers_arg(self.id),
                "--peer-ca", os.path.join(cert_dir, "ca.crt"),
                "--peer-cert", os.path.join(cert_dir, f"node-{self.id}.crt"),
                "--peer-key", os.path.join(cert_dir, f"node-{self.id}.key"),
                "--election-timeout-ms", str(c.election_timeout_ms),
                "--heartbeat-ms", str(c.heartbeat_ms),
                "--log-level", "debug"]
        if self.join:
            argv.append("--join")
        if not c.sync:
            argv.append("--no-sync")
        return argv + list(c.extra_args)

    def _env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TERN_")}
        env["TERN_ROOT_ACCESS_KEY"] = ternlib.ACCESS_KEY
        env["TERN_ROOT_SECRET_KEY"] = ternlib.SECRET_KEY
        return env

    # -- process control

    def start(self):
        assert not self.running(), f"node {self.id} already running"
        self.starts += 1
        path = os.path.join(self.cluster.log_dir, f"node-{self.id}-{self.starts}.log")
        self.log_paths.append(path)
        with open(path, "wb") as log:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=self._env())
        self.paused = False
        self.down_on_purpose = False
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_up(self, timeout_s=START_TIMEOUT_S):
        """Until /healthz answers (the process serves HTTP; it may not know a leader yet)."""
        def up():
            self.check_alive()
            try:
                return ternlib.http_request(self.hostport, "GET", "/healthz", timeout_s=1.0)[0] == 200
            except (OSError, EOFError, ValueError):
                return False
        wait_until(up, timeout_s, interval_s=0.02, what=f"node {self.id} /healthz")

    def ready(self):
        try:
            return ternlib.http_request(self.hostport, "GET", "/readyz", timeout_s=1.0)[0] == 200
        except (OSError, EOFError, ValueError):
            return False

    def wait_ready(self, timeout_s=START_TIMEOUT_S):
        def ready():
            self.check_alive()
            return self.ready()
        wait_until(ready, timeout_s, interval_s=0.02, what=f"node {self.id} /readyz")

    def check_alive(self):
        if self.proc is not None and self.proc.poll() is not None and not self.down_on_purpose:
            raise AssertionError(f"node {self.id} exited with {self.proc.returncode}; log tail:\n"
                                 f"{self.log_tail(60)}")

    def kill(self):
        """SIGKILL: a crash."""
        self.down_on_purpose = True
        if self.running():
            if self.paused:
                self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.paused = False

    def stop(self, timeout_s=30.0):
        """SIGTERM and wait; returns the exit code (None if not running)."""
        self.down_on_purpose = True
        if not self.running():
            return self.proc.returncode if self.proc else None
        if self.paused:
            self.resume()
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"node {self.id} did not exit within {timeout_s}s of SIGTERM:\n"
                                 f"{self.log_tail(40)}")

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    # -- HTTP

    def client(self, read_timeout_s=10.0):
        """A boto3 client for this node, one per thread and timeout (boto3 clients are not
        meant to be shared across threads)."""
        key = (threading.get_ident(), read_timeout_s)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = s3_client(self.endpoint, read_timeout_s=read_timeout_s)
            return self._clients[key]

    def signer(self):
        return ternlib.Signer(self.hostport, ternlib.ACCESS_KEY, ternlib.SECRET_KEY)

    def status(self, timeout_s=STATUS_TIMEOUT_S):
        """GET /_tern/cluster as a dict; raises on any failure."""
        r = self.signer().request("GET", "/_tern/cluster", timeout_s=timeout_s)
        if r.status != 200:
            raise RuntimeError(f"node {self.id}: GET /_tern/cluster -> {r.status} {r.body[:300]!r}")
        return json.loads(r.body)

    def try_status(self, timeout_s=STATUS_TIMEOUT_S):
        if not self.running() or self.paused:
            return None
        try:
            return self.status(timeout_s)
        except (OSError, EOFError, ValueError, RuntimeError):
            return None

    def admin(self, action, timeout_s=30.0, **params):
        """POST /_tern/cluster/ACTION?params -> (http status, parsed JSON or raw body)."""
        r = self.signer().request("POST", f"/_tern/cluster/{action}",
                                  params=[(k, str(v)) for k, v in params.items()],
                                  timeout_s=timeout_s)
        try:
            body = json.loads(r.body)
        except ValueError:
            body = r.body
        return r.status, body

    def metrics(self):
        text, _ = ternlib.fetch_metrics(self.hostport)
        return ternlib.parse_metrics(text)

    # -- logs

    def log_text(self, start=None):
        paths = self.log_paths if start is None else [self.log_paths[start - 1]]
        out = []
        for p in paths:
            if os.path.exists(p):
                with open(p, "rb") as f:
                    out.append(f.read().decode("utf-8", "replace"))
        return "\n".join(out)

    def log_tail(self, lines=40):
        if not self.log_paths:
            return ""
        with open(self.log_paths[-1], "rb") as f:
            text = f.read().decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    def log_grep(self, *needles, limit=40):
        """Lines of every start's log containing any needle (case-insensitive)."""
        out = []
        low = [n.lower() for n in needles]
        for p in self.log_paths:
            if not os.path.exists(p):
                continue
            with open(p, "rb") as f:
                for line in f.read().decode("utf-8", "replace").splitlines():
                    if any(n in line.lower() for n in low):
                        out.append(f"{os.path.basename(p)}: {line}")
        return out[-limit:]


# ----------------------------------------------------------------------------
# The cluster
# ----------------------------------------------------------------------------

class Cluster:
    def __init__(self, base_dir, size=3, spares=0, election_timeout_ms=ELECTION_TIMEOUT_MS,
                 heartbeat_ms=HEARTBEAT_MS, sync=SYNC, extra_args=()):
        self.base_dir = str(base_dir)
        self.log_dir = os.path.join(self.base_dir, "logs")
        self.cert_dir = os.path.join(self.base_dir, "certs")
        os.makedirs(self.log_dir, exist_ok=True)
        self.election_timeout_ms = election_timeout_ms
        self.heartbeat_ms = heartbeat_ms
        self.sync = sync
        self.extra_args = list(extra_args)
        self.member_ids = list(range(1, size + 1))
        self.spare_ids = list(range(size + 1, size + spares + 1))
        make_certs(self.cert_dir, self.member_ids + self.spare_ids)
        self.nodes = {i: Node(self, i) for i in self.member_ids}
        for k in self.spare_ids:
            self.nodes[k] = Node(self, k, join=True)
        self.route_ports = {}
        routes = {}
        for i in self.member_ids + self.spare_ids:
            for j in self.member_ids:
                if i != j:
                    port = ternlib.free_port()
                    self.route_ports[(i, j)] = port
                    routes[f"{i}>{j}"] = (port, self.nodes[j].peer_port)
        for k in self.spare_ids:
            port = ternlib.free_port()
            self.route_ports[(None, k)] = port
            routes[f">{k}"] = (port, self.nodes[k].peer_port)
        self.proxy = Proxy(routes, os.path.join(self.log_dir, "tcpproxy.log"))
        self.closed = False

    # -- topology

    def route_address(self, i, j):
        return f"127.0.0.1:{self.route_ports[(i, j)]}"

    def join_address(self, k):
        """The peer address to give add-node for spare node k (the route all members use)."""
        return f"127.0.0.1:{self.route_ports[(None, k)]}"

    def peers_arg(self, node_id):
        parts = []
        if node_id in self.member_ids:
            parts.append(f"{node_id}={self.nodes[node_id].peer_address}")
        for j in self.member_ids:
            if j != node_id:
                parts.append(f"{j}={self.route_address(node_id, j)}")
        return ",".join(sorted(parts, key=lambda p: int(p.split("=")[0])))

    def routes_of(self, node_id):
        """Every route into or out of node_id."""
        out = []
        for (i, j) in self.route_ports:
            if i == node_id or j == node_id:
                out.append(f">{j}" if i is None else f"{i}>{j}")
        return out

    def isolate(self, node_id):
        """Cuts every route into and out of node_id, both directions."""
        for r in self.routes_of(node_id):
            self.proxy.cmd(f"cut {r}")

    def cut_link(self, i, j):
        self.proxy.cmd(f"cut {i}>{j}")

    def heal(self):
        for (i, j) in self.route_ports:
            self.proxy.cmd(f"heal {'' if i is None else i}>{j}")

    def link_stats(self, i, j):
        return self.proxy.stats(f"{'' if i is None else i}>{j}")

    # -- processes

    def node(self, node_id):
        return self.nodes[node_id]

    def start(self, ids=None, wait=True, timeout_s=START_TIMEOUT_S):
        ids = list(self.member_ids if ids is None else ids)
        for i in ids:
            self.nodes[i].start()
        if wait:
            for i in ids:
                self.nodes[i].wait_ready(timeout_s)
        return self

    def running(self):
        return [n for n in self.nodes.values() if n.running()]

    def live(self):
        """Running and not paused."""
        return [n for n in self.nodes.values() if n.running() and not n.paused]

    def check_alive(self):
        for n in self.nodes.values():
            n.check_alive()
        # Every peer link goes through the proxy: if it is gone, no election can succeed, and
        # the failure should say so rather than time out waiting for a leader.
        proxy = getattr(self, "proxy", None)
        if proxy is not None and proxy.proc.poll() is not None:
            proxy.log.flush()
            with open(proxy.log.name, "rb") as f:
                tail = f.read()[-4000:].decode(errors="replace")
            raise AssertionError(f"tcpproxy exited with {proxy.proc.returncode}; its log:\n"
                                 f"{tail}")

    def statuses(self, nodes=None):
        nodes = self.live() if nodes is None else nodes
        return {n.id: n.try_status() for n in nodes}

    def agreed_leader(self, among=None):
        """(leader id, term) if every node in among (ids; default: the live nodes) answers,
        exactly one of them is leader, and all name it in the same term; else None."""
        nodes = self.live() if among is None else [self.nodes[i] for i in among]
        sts = self.statuses(nodes)
        if not sts or any(s is None for s in sts.values()):
            return None
        leaders = [i for i, s in sts.items() if s["role"] == "leader"]
        if len(leaders) != 1:
            return None
        lid = leaders[0]
        term = sts[lid]["term"]
        if all(s["leader_id"] == lid and s["term"] == term for s in sts.values()):
            return lid, term
        return None

    def leader(self, timeout_s=20.0, among=None):
        """Waits until the nodes in among agree on one leader; returns (leader id, term)."""
        def agreed():
            self.check_alive()
            return self.agreed_leader(among)
        try:
            return wait_until(agreed, timeout_s, interval_s=0.05,
                              what=f"an agreed leader among {among or 'the live nodes'}")
        except TimeoutError as e:
            raise AssertionError(f"{e}; statuses: {self.status_summary(among)}") from None

    def status_summary(self, among=None):
        nodes = self.live() if among is None else [self.nodes[i] for i in among]
        out = {}
        for n in nodes:
            s = n.try_status()
            out[n.id] = None if s is None else {k: s[k] for k in (
                "role", "term", "leader_id", "commit_index", "applied_index", "last_index")}
        return out

    def wait_caught_up(self, node_id, leader_id, timeout_s=30.0):
        """Waits until node_id has applied everything the leader had committed when called and
        follows leader_id."""
        target = self.nodes[leader_id].status()["commit_index"]

        def caught_up():
            self.check_alive()
            s = self.nodes[node_id].try_status()
            return (s is not None and s["applied_index"] >= target and s["leader_id"] == leader_id
                    and s["role"] == "follower")
        try:
            wait_until(caught_up, timeout_s, interval_s=0.05,
                       what=f"node {node_id} applying through {target} under leader {leader_id}")
        except TimeoutError as e:
            raise AssertionError(f"{e}; statuses: {self.status_summary()}") from None
        return target

    def stop_all(self):
        """SIGTERM every running node; returns a list of complaints (exit code != 0)."""
        errors = []
        for n in self.nodes.values():
            if n.running():
                try:
                    rc = n.stop()
                except AssertionError as e:
                    errors.append(str(e))
                    continue
                if rc != 0:
                    errors.append(f"node {n.id} exited with {rc} on SIGTERM; tail:\n"
                                  f"{n.log_tail(30)}")
        return errors

    def unexpected_exits(self):
        return [(n.id, n.proc.returncode) for n in self.nodes.values()
                if n.proc is not None and n.proc.poll() is not None and not n.down_on_purpose]

    def report(self, lines=25):
        """Log tails of every node (and the interesting lines of every start)."""
        out = [f"cluster logs in {self.log_dir}"]
        for n in self.nodes.values():
            if not n.log_paths:
                continue
            rc = n.proc.poll() if n.proc else None
            out.append(f"=== node {n.id} (starts {n.starts}, exit {rc}, "
                       f"{'paused' if n.paused else ''}) {n.log_paths[-1]}")
            bad = n.log_grep("assert", "abort", "fatal", "panic", "sanitizer", " error ",
                             "[error]", "level=error", limit=15)
            if bad:
                out.append("--- error lines:")
                out += bad
            out.append(f"--- last {lines} lines:")
            out.append(n.log_tail(lines))
        return "\n".join(out)

    def close(self):
        """Stops everything; returns complaints (unexpected exits, unclean SIGTERM exits)."""
        if self.closed:
            return []
        self.closed = True
        errors = [f"node {i} died unexpectedly (exit {rc})" for i, rc in self.unexpected_exits()]
        try:
            self.heal()
        except (OSError, RuntimeError):
            pass
        errors += self.stop_all()
        self.proxy.close()
        return errors


# ----------------------------------------------------------------------------
# Client load with a recorded history
# ----------------------------------------------------------------------------

def body_for(key, writer, seq, rng, size):
    """A body unique to (key, writer, seq), padded with random bytes to size."""
    head = f"{key}|{writer}|{seq}|".encode()
    return head + rng.randbytes(max(0, size - len(head)))


def value_of(data):
    """The register value a body stands for: its MD5 (which is also its single-part ETag)."""
    return hashlib.md5(data).hexdigest()


class History:
    """Every operation of a run, per key, as linearizability.Op, plus counters."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_key = {}
        self.bodies = {}       # value -> bytes (kept for small bodies, for byte comparison)
        self.ack_times = []    # end time of every acknowledged write
        self.counts = {}       # (kind, status) -> n
        self.errors = {}       # error text -> n

    def add(self, key, op, error=None):
        with self.lock:
            self.by_key.setdefault(key, []).append(op)
            k = (op.kind, op.status)
            self.counts[k] = self.counts.get(k, 0) + 1
            if op.kind == "write" and op.status == "ok":
                self.ack_times.append(op.end)
            if error is not None:
                self.errors[error] = self.errors.get(error, 0) + 1

    def acked_writes(self):
        with self.lock:
            return [(k, op) for k, ops in self.by_key.items() for op in ops
                    if op.kind == "write" and op.status == "ok"]

    def ack_count(self):
        with self.lock:
            return len(self.ack_times)

    def longest_ack_gap(self, start, end):
        """The longest time in [start, end] without an acknowledged write."""
        with self.lock:
            times = sorted(t for t in self.ack_times if start <= t <= end)
        points = [start] + times + [end]
        return max(b - a for a, b in zip(points, points[1:]))

    def summary(self):
        with self.lock:
            c = dict(self.counts)
            e = sorted(self.errors.items(), key=lambda kv: -kv[1])[:8]
            timed = [(op.end - op.start, op) for ops in self.by_key.values() for op in ops
                     if op.end is not None]
        slow = sorted(timed, key=lambda t: -t[0])[:5]
        slow_text = "; ".join(f"{d:.1f}s {op.kind} {op.status} {op.info}" for d, op in slow)
        return f"ops {c}; most frequent errors {e}; slowest: {slow_text}"


class Workload:
    """threads client threads doing PUTs of new keys, overwrites of shared keys and GETs
    against nodes picked at random from targets() (a callable returning node objects), for at
    most duration_s and max_ops per thread. Every op is recorded in history."""

    def __init__(self, cluster, bucket, history, threads=8, duration_s=20.0, max_ops=5000,
                 shared_keys=8, seed=None, targets=None, read_timeout_s=10.0,
                 sizes=(64, 512, 4096, 16384, 200_000), new_key_ratio=0.45,
                 overwrite_ratio=0.25):
        self.cluster = cluster
        self.bucket = bucket
        self.history = history
        self.threads = threads
        self.duration_s = duration_s
        self.max_ops = max_ops
        self.shared = [f"shared/{i}" for i in range(shared_keys)]
        self.seed = random.randrange(1 << 30) if seed is None else seed
        self.targets = targets or (lambda: self.cluster.live())
        self.read_timeout_s = read_timeout_s
        self.sizes = sizes
        self.new_key_ratio = new_key_ratio
        self.overwrite_ratio = overwrite_ratio
        self.stop_event = threading.Event()
        self._threads = []
        self.thread_errors = []

    def start(self):
        self.deadline = time.monotonic() + self.duration_s
        for t in range(self.threads):
            th = threading.Thread(target=self._run, args=(t,), daemon=True,
                                  name=f"workload-{t}")
            th.start()
            self._threads.append(th)
        return self

    def stop(self, timeout_s=60.0):
        self.stop_event.set()
        return self.join(timeout_s)

    def join(self, timeout_s=60.0):
        deadline = time.monotonic() + timeout_s
        for th in self._threads:
            th.join(timeout=max(0.1, deadline - time.monotonic()))
        alive = [th.name for th in self._threads if th.is_alive()]
        assert not alive, f"workload threads still running after {timeout_s}s: {alive}"
        assert not self.thread_errors, f"workload thread crashed: {self.thread_errors}"

    def _run(self, t):
        try:
            self._loop(t)
        except Exception:  # a bug in the test: report it rather than lose it
            import traceback
            self.thread_errors.append(f"thread {t}: {traceback.format_exc()}")
            raise

    def _loop(self, t):
        rng = random.Random(self.seed * 1000 + t)
        mine = []
        for i in range(self.max_ops):
            if self.stop_event.is_set() or time.monotonic() >= self.deadline:
                return
            targets = self.targets()
            if not targets:
                # Every node down at once (between a kill and a restart): try again shortly.
                self.stop_event.wait(0.05)
                continue
            node = rng.choice(targets)
            client = node.client(self.read_timeout_s)
            roll = rng.random()
            if roll < self.new_key_ratio:
                key = f"t{t}/{i:05d}"
                mine.append(key)
                self._put(client, node, key, t, i, rng)
            elif roll < self.new_key_ratio + self.overwrite_ratio:
                self._put(client, node, rng.choice(self.shared), t, i, rng)
            else:
                key = rng.choice(self.shared) if (not mine or rng.random() < 0.6) else rng.choice(mine)
                self._get(client, node, key, t)

    def _put(self, client, node, key, t, i, rng):
        data = body_for(key, t, i, rng, rng.choice(self.sizes))
        value = value_of(data)
        start = time.monotonic()
        error = None
        try:
            client.put_object(Bucket=self.bucket, Key=key, Body=data)
            status = "ok"
        except (BotoCoreError, ClientError, OSError) as e:
            status = classify_error(e)
            error = f"PUT {error_text(e)}"
        end = time.monotonic()
        self.history.add(key, Op("write", value, start, end, status,
                                 info=f"t{t} node{node.id}" + (f" {error}" if error else "")),
                         error)

    def _get(self, client, node, key, t):
        start = time.monotonic()
        error = None
        try:
            r = client.get_object(Bucket=self.bucket, Key=key)
            value = value_of(r["Body"].read())
            status = "ok"
        except ClientError as e:
            if ternlib.error_code(e) == "NoSuchKey":
                value, status = None, "ok"
            else:
                value, status = None, "fail"
                error = f"GET {error_text(e)}"
        except (BotoCoreError, OSError) as e:
            value, status = None, "fail"
            error = f"GET {error_text(e)}"
        end = time.monotonic()
        self.history.add(key, Op("read", value, start, end, status,
                                 info=f"t{t} node{node.id}" + (f" {error}" if error else "")),
                         error)


def list_etags(client, bucket):
    """{key: etag without quotes} of a whole bucket (bounded pagination)."""
    out = {}
    token = None
    for _ in range(10000):
        kw = {"Bucket": bucket, "MaxKeys": 1000}
        if token:
            kw["ContinuationToken"] = token
        r = client.list_objects_v2(**kw)
        for o in r.get("Contents", []):
            out[o["Key"]] = o["ETag"].strip('"')
        if not r["IsTruncated"]:
            return out
        token = r["NextContinuationToken"]
    raise AssertionError("listing did not terminate")


def final_reads(history, node, bucket):
    """Lists the bucket on node and records every key's listed ETag as a read (start and end of
    the whole listing). A key the history has but the listing lacks reads as absent."""
    client = node.client(read_timeout_s=30.0)
    start = time.monotonic()
    listed = list_etags(client, bucket)
    end = time.monotonic()
    for key in list(history.by_key):
        history.add(key, Op("read", listed.get(key), start, end, "ok",
                            info=f"final listing on node{node.id}"))
    return listed


def check_acked_present(history, listed, node_id):
    """Every key whose writes were all acknowledged-or-failed and whose single acknowledged
    write is its only write must be listed with that value. Returns complaint strings."""
    errors = []
    with history.lock:
        items = list(history.by_key.items())
    for key, ops in items:
        writes = [o for o in ops if o.kind == "write" and o.status != "fail"]
        if len(writes) == 1 and writes[0].status == "ok":
            got = listed.get(key)
            if got != writes[0].value:
                errors.append(f"node {node_id}: acknowledged {key} ({writes[0]!r}) lists as {got}")
    return errors
