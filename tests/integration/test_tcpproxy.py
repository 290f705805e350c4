"""Black-box tests of tests/tools/tcpproxy: pass-through, stats, delay, cut, bandwidth, reset."""

import os
import socket
import subprocess
import threading
import time

import pytest

from ternlib import free_port, wait_until

MIB = 1024 * 1024
WAIT_S = 10.0


def proxy_binary():
    build = os.environ.get("TERN_BUILD_DIR")
    path = os.path.join(build, "tcpproxy") if build else "/work/main/build/tcpproxy"
    if not os.access(path, os.X_OK):
        path = "/work/main/build/tcpproxy"
    return path


class EchoServer:
    """Echoes every byte back on a thread per connection; closes when the client half-closes."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn):
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(60)
            try:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        return
                    conn.sendall(data)
            except OSError:
                return

    def stop(self):
        self.stopping = True
        self.thread.join(timeout=5)
        self.sock.close()


class Proxy:
    def __init__(self, target_port):
        self.listen_port = free_port()
        self.control_port = free_port()
        self.proc = subprocess.Popen(
            [proxy_binary(), "--control", f"127.0.0.1:{self.control_port}",
             "--route", f"r1=127.0.0.1:{self.listen_port}->127.0.0.1:{target_port}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready = []
        reader = threading.Thread(target=lambda: ready.append(self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(timeout=WAIT_S)
        assert ready and ready[0] == b"ready\n", f"proxy not ready: {ready!r}"
        self.control = socket.create_connection(("127.0.0.1", self.control_port), timeout=WAIT_S)
        self.control_file = self.control.makefile("rb")

    def cmd(self, line):
        self.control.sendall(line.encode() + b"\n")
        reply = self.control_file.readline()
        assert reply.endswith(b"\n"), f"no reply to {line!r}"
        return reply.decode().rstrip("\n")

    def stats(self):
        reply = self.cmd("stats r1")
        assert reply.startswith("ok "), reply
        return {k: int(v) for k, v in (f.split("=") for f in reply[3:].split())}

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.listen_port), timeout=WAIT_S)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=WAIT_S)
        self.control_file.close()
        self.control.close()


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.stop()


@pytest.fixture
def proxy(echo):
    p = Proxy(echo.port)
    yield p
    p.close()


def recv_exactly(sock, n, timeout_s=WAIT_S):
    deadline = time.monotonic() + timeout_s
    chunks = []
    got = 0
    while got < n:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"received {got} of {n} bytes before the deadline"
        sock.settimeout(remaining)
        data = sock.recv(min(65536, n - got))
        assert data, f"connection closed after {got} of {n} bytes"
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


def nothing_arrives(sock, wait_s):
    """True if no byte arrives within wait_s (a bounded wait, the only way to see 'frozen')."""
    sock.settimeout(wait_s)
    try:
        data = sock.recv(1)
    except socket.timeout:
        return True
    return False  # a byte arrived, or the connection closed: either way not frozen


def round_trip_s(sock, payload=b"ping"):
    start = time.monotonic()
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload
    return time.monotonic() - start


def best_round_trip_s(sock, tries=3):
    """The fastest of a few round trips, so one scheduling hiccup on a busy host is ignored."""
    return min(round_trip_s(sock) for _ in range(tries))


def test_bytes_pass_both_ways_and_stats_count_exactly(proxy):
    sizes = [1, 1000, 100000]
    with proxy.connect() as s:
        for n in sizes:
            payload = os.urandom(n)
            s.sendall(payload)
            assert recv_exactly(s, n) == payload
        total = sum(sizes)
        st = wait_until(lambda: (lambda x: x if x["bytes_b2a"] == total else None)(proxy.stats()),
                        WAIT_S, what="stats")
        assert st == {"bytes_a2b": total, "bytes_b2a": total, "conns": 1}
    wait_until(lambda: proxy.stats()["conns"] == 0, WAIT_S, what="conns back to 0")


def test_delay_adds_latency(proxy):
    with proxy.connect() as s:
        baseline = best_round_trip_s(s)
        assert baseline < 0.1, f"round trip without delay took {baseline:.3f}s"
        assert proxy.cmd("delay r1 200") == "ok"
        delayed = round_trip_s(s)
        assert delayed >= 0.2, f"round trip with delay 200 took {delayed:.3f}s"
        # Order is preserved across chunks sent while delayed and after the delay drops.
        s.sendall(b"one-")
        s.sendall(b"two-")
        assert proxy.cmd("delay r1 0") == "ok"
        s.sendall(b"three")
        assert recv_exactly(s, 13) == b"one-two-three"
        assert best_round_trip_s(s) < 0.1


def test_cut_freezes_and_heal_releases(proxy):
    with proxy.connect() as s:
        assert round_trip_s(s) < 1.0
        assert proxy.cmd("cut r1") == "ok"
        s.sendall(b"held")
        assert nothing_arrives(s, 0.5), "bytes passed a cut route"
        assert proxy.stats()["conns"] == 1, "cut must keep the connection open"
        assert proxy.cmd("heal r1") == "ok"
        assert recv_exactly(s, 4) == b"held"


def test_cut_refuses_new_connections(proxy):
    assert proxy.cmd("cut r1") == "ok"
    # The proxy accepts and resets at once; the RST can beat connect() or the first recv().
    try:
        with proxy.connect() as s:
            s.settimeout(WAIT_S)
            data = s.recv(1)
    except ConnectionResetError:
        data = b""
    assert data == b"", "a fully cut route must refuse new connections"
    wait_until(lambda: proxy.stats()["conns"] == 0, WAIT_S, what="refused conn gone")
    assert proxy.cmd("heal r1") == "ok"
    with proxy.connect() as s:
        assert round_trip_s(s) < 1.0


def proxy_rss_bytes(proxy):
    with open(f"/proc/{proxy.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_cut_keeps_buffered_bytes_bounded(proxy):
    """A sender on a cut route is pushed back by TCP, not absorbed by proxy memory."""
    attempted = 64 * MIB
    with proxy.connect() as s:
        assert proxy.cmd("cut r1 a2b") == "ok"
        rss_before = proxy_rss_bytes(proxy)
        s.setblocking(False)
        block = b"z" * 65536
        sent = 0
        deadline = time.monotonic() + WAIT_S
        stalled_since = None
        # Send until the socket stays full for 0.3 s (backpressure) or 64 MiB went out.
        while sent < attempted and time.monotonic() < deadline:
            try:
                sent += s.send(block)
                stalled_since = None
            except BlockingIOError:
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since > 0.3:
                    break
                time.sleep(0.01)
        assert sent < attempted, "the cut route absorbed 64 MiB: buffering is unbounded"
        growth = proxy_rss_bytes(proxy) - rss_before
        # BUFFERED_BYTES_MAX is 1 MiB per direction; allow allocator slack.
        assert growth < 8 * MIB, f"proxy grew by {growth} bytes while cut"
        assert proxy.stats()["bytes_a2b"] == 0
        s.setblocking(True)
        assert proxy.cmd("heal r1") == "ok"
        assert recv_exactly(s, sent, timeout_s=30) == b"z" * sent


def test_one_way_cut(proxy):
    with proxy.connect() as s:
        assert proxy.cmd("cut r1 b2a") == "ok"
        s.sendall(b"abc")
        # a2b still flows: the echo server receives and echoes, which stats show ...
        wait_until(lambda: proxy.stats()["bytes_a2b"] == 3, WAIT_S, what="a2b bytes")
        # ... but the echo is held in b2a.
        assert nothing_arrives(s, 0.5), "b2a bytes passed a b2a cut"
        assert proxy.stats()["bytes_b2a"] == 0
        assert proxy.cmd("heal r1") == "ok"
        assert recv_exactly(s, 3) == b"abc"

        assert proxy.cmd("cut r1 a2b") == "ok"
        s.sendall(b"xyz")
        assert nothing_arrives(s, 0.5), "a2b bytes passed an a2b cut"
        assert proxy.stats()["bytes_a2b"] == 3
        assert proxy.cmd("heal r1 a2b") == "ok"
        assert recv_exactly(s, 3) == b"xyz"


def test_bandwidth_limits_transfer(proxy):
    assert proxy.cmd(f"bandwidth r1 {2 * MIB}") == "ok"
    payload = os.urandom(MIB)
    with proxy.connect() as s:
        start = time.monotonic()
        sender = threading.Thread(target=s.sendall, args=(payload,), daemon=True)
        sender.start()
        echoed = recv_exactly(s, MIB, timeout_s=30)
        elapsed = time.monotonic() - start
        sender.join(timeout=WAIT_S)
    assert echoed == payload
    assert elapsed >= 0.4, f"1 MiB at 2 MiB/s took only {elapsed:.3f}s"
    assert elapsed < 10, f"1 MiB at 2 MiB/s took {elapsed:.3f}s"
    assert proxy.cmd("bandwidth r1 0") == "ok"


def test_reset_closes_connections(proxy):
    socks = [proxy.connect() for _ in range(2)]
    try:
        for s in socks:
            assert round_trip_s(s) < 1.0
        assert proxy.stats()["conns"] == 2
        assert proxy.cmd("reset r1") == "ok"
        for s in socks:
            s.settimeout(WAIT_S)
            try:
                data = s.recv(1)
            except ConnectionResetError:
                data = b""
            assert data == b""
        assert proxy.stats()["conns"] == 0
    finally:
        for s in socks:
            s.close()
    with proxy.connect() as s:
        assert round_trip_s(s) < 1.0


@pytest.mark.parametrize("line,reason", [
    ("", "err empty command"),
    ("bogus r1", "err unknown command"),
    ("delay", "err missing route name"),
    ("delay nope 5", "err no route"),
    ("delay r1", "err usage"),
    ("delay r1 -5", "err delay needs a decimal number"),
    ("delay r1 12abc", "err delay needs a decimal number"),
    ("delay r1 99999999999", "err delay out of range"),
    ("bandwidth r1 fast", "err bandwidth needs a decimal number"),
    ("cut r1 sideways", "err usage"),
    ("stats r1 extra", "err usage"),
    ("quit now", "err usage"),
    ("x" * 1000, "err line too long"),
])
def test_malformed_commands_get_err_and_change_nothing(proxy, line, reason):
    reply = proxy.cmd(line)
    assert reply.startswith(reason), reply
    with proxy.connect() as s:
        assert best_round_trip_s(s) < 0.1, "a rejected command changed the route"
    assert proxy.proc.poll() is None


def test_quit_exits_zero(proxy):
    with proxy.connect() as s:
        assert round_trip_s(s) < 1.0
        assert proxy.cmd("quit") == "ok"
        assert proxy.proc.wait(timeout=WAIT_S) == 0
