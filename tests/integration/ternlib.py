"""Helpers for tern's integration tests: a ternd process handle, SigV4 signing, raw HTTP.

Everything here is bounded: every wait has a deadline and every loop a maximum
number of iterations, so a hung server fails a test instead of hanging ctest.
"""

import base64
import datetime
import hashlib
import hmac
import os
import random
import re
import shutil
import signal
import socket
import string
import subprocess
import time
import urllib.parse
import xml.etree.ElementTree as ET

import boto3
import botocore.config

REGION = "us-east-1"
ACCESS_KEY = "AKTERNTESTROOT000001"
SECRET_KEY = "tern-test-secret-key-0123456789abcdef"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MIB = 1024 * 1024


def ternd_binary():
    return os.environ.get("TERND") or "/work/main/build/ternd"


def ternctl_binary():
    return os.environ.get("TERNCTL") or "/work/main/build/ternctl"


def source_dir():
    return os.environ.get("TERN_SOURCE_DIR") or os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    """A port the kernel considers free right now (a race remains; start() retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout_s, interval_s=0.02, what="condition"):
    """Polls predicate() until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    max_iterations = int(timeout_s / interval_s) + 2
    for _ in range(max_iterations):
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")


def unique_name(prefix="b"):
    suffix = "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(10))
    return f"{prefix}-{suffix}"


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def md5_hex(data):
    return hashlib.md5(data).hexdigest()


def random_bytes(n, seed=None):
    if seed is None:
        return os.urandom(n)
    return random.Random(seed).randbytes(n)


# ----------------------------------------------------------------------------
# ternd process
# ----------------------------------------------------------------------------

class TerndError(RuntimeError):
    pass


class Ternd:
    """One ternd process on a data dir. start()/stop()/kill()/restart() are bounded."""

    def __init__(self, data_dir, log_dir, sync=True, extra_args=(), access_key=ACCESS_KEY,
                 secret_key=SECRET_KEY, binary=None):
        self.binary = binary or ternd_binary()
        self.data_dir = str(data_dir)
        self.log_dir = str(log_dir)
        self.sync = sync
        self.extra_args = list(extra_args)
        self.access_key = access_key
        self.secret_key = secret_key
        self.port = None
        self.proc = None
        self.log_path = None
        self.starts = 0

    @property
    def host(self):
        return "127.0.0.1"

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def hostport(self):
        return f"127.0.0.1:{self.port}"

    def _env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TERN_")}
        if self.access_key is not None:
            env["TERN_ROOT_ACCESS_KEY"] = self.access_key
            env["TERN_ROOT_SECRET_KEY"] = self.secret_key
        return env

    def _argv(self):
        argv = [self.binary, "--data-dir", self.data_dir, "--s3-listen", self.hostport,
                "--log-level", "debug"]
        if not self.sync:
            argv.append("--no-sync")
        return argv + self.extra_args

    def start(self, ready_timeout_s=30.0, port=None):
        if not os.access(self.binary, os.X_OK):
            raise TerndError(f"ternd binary not found or not executable: {self.binary}")
        # A port picked free can be taken before ternd binds it: retry a few times.
        last_error = None
        # A restart reuses the previous port first, so clients made before it keep working.
        first_port = port if port is not None else self.port
        for attempt in range(3):
            self.port = first_port if (first_port is not None and attempt == 0) else free_port()
            self.starts += 1
            self.log_path = os.path.join(self.log_dir, f"ternd-{self.starts}.log")
            log = open(self.log_path, "wb")
            try:
                self.proc = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, env=self._env())
            finally:
                log.close()
            try:
                self.wait_ready(ready_timeout_s)
                return self
            except TerndError as e:
                last_error = e
                if self.proc.poll() is None:
                    self.kill()
                if "address already in use" not in self.log_text().lower():
                    break
        raise last_error

    def wait_ready(self, timeout_s):
        deadline = time.monotonic() + timeout_s
        for _ in range(int(timeout_s / 0.02) + 2):
            rc = self.proc.poll()
            if rc is not None:
                raise TerndError(f"ternd exited with {rc} before ready:\n{self.log_tail()}")
            try:
                status, _, body = http_request(self.hostport, "GET", "/readyz", timeout_s=1.0)
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        raise TerndError(f"ternd not ready after {timeout_s}s:\n{self.log_tail()}")

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout_s=30.0):
        """Sends sig and waits for the exit; returns the exit code (SIGKILLs after timeout)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise TerndError(f"ternd did not exit within {timeout_s}s of signal {sig}:\n"
                                 f"{self.log_tail()}")
        return self.proc.returncode

    def kill(self):
        """SIGKILL (a crash): no cleanup runs in ternd."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        return self.proc.returncode if self.proc else None

    def restart(self, crash=False, ready_timeout_s=60.0):
        """Stops (cleanly, asserting exit 0, or with SIGKILL) and starts on the same data dir."""
        if crash:
            self.kill()
        else:
            rc = self.stop()
            if rc != 0:
                raise TerndError(f"ternd exit code {rc} on SIGTERM:\n{self.log_tail()}")
        return self.start(ready_timeout_s=ready_timeout_s, port=self.port)

    def log_text(self):
        if not self.log_path or not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_tail(self, lines=40):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def client(self, access_key=None, secret_key=None, **config):
        return s3_client(self.endpoint, access_key or self.access_key,
                         secret_key or self.secret_key, **config)


def s3_client(endpoint, access_key, secret_key, max_pool_connections=16, read_timeout=120):
    cfg = botocore.config.Config(
        region_name=REGION,
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"total_max_attempts": 1},
        connect_timeout=5,
        read_timeout=read_timeout,
        max_pool_connections=max_pool_connections,
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint, aws_access_key_id=access_key,
                                          aws_secret_access_key=secret_key, config=cfg)


def error_code(exc):
    """The S3 error code (or HTTP status for bodiless errors) of a botocore ClientError."""
    return exc.response.get("Error", {}).get("Code")


def http_status(exc):
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


# ----------------------------------------------------------------------------
# SigV4 (our own implementation, so tests can control every field; checked
# against botocore by test_s3_malformed.py::test_signer_matches_botocore)
# ----------------------------------------------------------------------------

def amz_now(offset_s=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_s)
    return t.strftime("%Y%m%dT%H%M%SZ")


def uri_encode(s, encode_slash=True):
    safe = "-_.~" if encode_slash else "-_.~/"
    if isinstance(s, str):
        s = s.encode("utf-8")
    return urllib.parse.quote(s, safe=safe)


def object_path(bucket, key=None):
    if key is None:
        return "/" + uri_encode(bucket)
    return "/" + uri_encode(bucket) + "/" + uri_encode(key, encode_slash=False)


def canonical_query(params):
    enc = sorted((uri_encode(k), uri_encode(v)) for k, v in params)
    return "&".join(f"{k}={v}" for k, v in enc)


def signing_key(secret, date8, region=REGION, service="s3"):
    k = hmac.new(("AWS4" + secret).encode(), date8.encode(), hashlib.sha256).digest()
    k = hmac.new(k, region.encode(), hashlib.sha256).digest()
    k = hmac.new(k, service.encode(), hashlib.sha256).digest()
    return hmac.new(k, b"aws4_request", hashlib.sha256).digest()


def _canonical_headers(headers, names):
    lower = {}
    for k, v in headers.items():
        lower[k.lower()] = re.sub(r"\s+", " ", str(v).strip())
    return "".join(f"{n}:{lower[n]}\n" for n in names)


def sign_headers(method, hostport, path, params, headers, payload_hash, access_key, secret_key,
                 amz_date=None, region=REGION, extra_signed=()):
    """Returns a new header dict with host, x-amz-date, x-amz-content-sha256, Authorization.

    Signed: host, x-amz-*, content-md5, content-type and any names in extra_signed.
    """
    amz_date = amz_date or amz_now()
    h = dict(headers)
    h["Host"] = hostport
    h["x-amz-date"] = amz_date
    h["x-amz-content-sha256"] = payload_hash
    names = sorted({k.lower() for k in h
                    if k.lower() in ("host", "content-md5", "content-type")
                    or k.lower().startswith("x-amz-")} | {n.lower() for n in extra_signed})
    signed_headers = ";".join(names)
    canonical = "\n".join([method, path, canonical_query(params),
                           _canonical_headers(h, names), signed_headers, payload_hash])
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                     hashlib.sha256(canonical.encode()).hexdigest()])
    key = signing_key(secret_key, amz_date[:8], region)
    sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    h["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                          f"SignedHeaders={signed_headers}, Signature={sig}")
    h["_seed_signature"] = sig
    h["_signing_key"] = key
    h["_scope"] = scope
    return h


def presign_url(hostport, method, path, access_key, secret_key, expires_s=300, amz_date=None,
                region=REGION, extra_params=()):
    amz_date = amz_date or amz_now()
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    params = [("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
              ("X-Amz-Credential", f"{access_key}/{scope}"),
              ("X-Amz-Date", amz_date),
              ("X-Amz-Expires", str(expires_s)),
              ("X-Amz-SignedHeaders", "host")] + list(extra_params)
    canonical = "\n".join([method, path, canonical_query(params), f"host:{hostport}\n", "host",
                           "UNSIGNED-PAYLOAD"])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                     hashlib.sha256(canonical.encode()).hexdigest()])
    sig = hmac.new(signing_key(secret_key, amz_date[:8], region), sts.encode(),
                   hashlib.sha256).hexdigest()
    query = canonical_query(params + [("X-Amz-Signature", sig)])
    return f"http://{hostport}{path}?{query}"


def aws_chunked_body(data, chunk_size, seed_signature, key, amz_date, scope, corrupt_chunk=None,
                     corrupt_data_chunk=None):
    """Encodes data as aws-chunked with chained chunk signatures (STREAMING-AWS4-HMAC-SHA256-PAYLOAD).

    corrupt_chunk: index of a chunk whose signature is replaced by a wrong one;
    corrupt_data_chunk: index of a chunk whose data is altered after signing.
    """
    chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
    prev = seed_signature
    out = []
    for i, chunk in enumerate(chunks):
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, EMPTY_SHA256,
                         hashlib.sha256(chunk).hexdigest()])
        sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        prev = sig
        wire_sig = sig
        if corrupt_chunk == i:
            wire_sig = ("0" if sig[0] != "0" else "1") + sig[1:]
        wire_data = chunk
        if corrupt_data_chunk == i and chunk:
            wire_data = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
        out.append(f"{len(chunk):x};chunk-signature={wire_sig}\r\n".encode() + wire_data + b"\r\n")
    return b"".join(out)


# ----------------------------------------------------------------------------
# Raw HTTP/1.1 over a socket
# ----------------------------------------------------------------------------

class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) as received
        self.body = body

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    @property
    def s3_code(self):
        return s3_error_code(self.body)

    def __repr__(self):
        return (f"<Response {self.status} {self.reason} headers={self.headers} "
                f"body={self.body[:600]!r}>")


def s3_error_code(body):
    if not body:
        return None
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    code = root.find("Code")
    if code is None:
        code = root.find("{*}Code")
    return code.text if code is not None else None


class RawConn:
    """A client socket with a read buffer; every read has a timeout."""

    def __init__(self, hostport, timeout_s=10.0):
        host, port = hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        self.timeout_s = timeout_s
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise EOFError("connection closed by server")
        self.buf += chunk

    def _read_until(self, marker, limit=1 << 20):
        for _ in range(100000):
            i = self.buf.find(marker)
            if i >= 0:
                out, self.buf = self.buf[:i + len(marker)], self.buf[i + len(marker):]
                return out
            if len(self.buf) > limit:
                raise ValueError("response header too large")
            self._fill()
        raise ValueError("read loop bound reached")

    def _read_exact(self, n):
        for _ in range(n // 1024 + 100000):
            if len(self.buf) >= n:
                out, self.buf = self.buf[:n], self.buf[n:]
                return out
            self._fill()
        raise ValueError("read loop bound reached")

    def read_response(self, method="GET"):
        """Reads one response (returns 1xx interim responses as they come)."""
        head = self._read_until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise ValueError(f"bad status line {lines[0]!r}")
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = []
        for line in lines[1:]:
            if not line:
                continue
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
        resp = Response(status, reason, headers, b"")
        if 100 <= status < 200 or status in (204, 304) or method == "HEAD":
            return resp
        te = (resp.header("transfer-encoding") or "").lower()
        cl = resp.header("content-length")
        if "chunked" in te:
            body = []
            for _ in range(1000000):
                size_line = self._read_until(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    # trailers until empty line
                    for _ in range(1000):
                        if self._read_until(b"\r\n") == b"\r\n":
                            break
                    break
                body.append(self._read_exact(size))
                self._read_exact(2)
            resp.body = b"".join(body)
        elif cl is not None:
            resp.body = self._read_exact(int(cl))
        else:
            # Body delimited by connection close.
            for _ in range(1000000):
                try:
                    self._fill()
                except EOFError:
                    break
            resp.body, self.buf = self.buf, b""
        return resp

    def closed_by_peer(self, timeout_s=5.0):
        """True when the server closes the connection (EOF or reset) within timeout_s."""
        self.sock.settimeout(timeout_s)
        deadline = time.monotonic() + timeout_s
        try:
            for _ in range(100000):
                if time.monotonic() > deadline:
                    return False
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(self.timeout_s)
        return False


def build_request(method, path, query="", headers=None, body=b""):
    target = path + ("?" + query if query else "")
    lines = [f"{method} {target} HTTP/1.1"]
    for k, v in (headers or {}).items():
        if k.startswith("_"):
            continue
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def http_request(hostport, method, target, headers=None, body=b"", timeout_s=10.0):
    """A plain (unsigned) HTTP request on a new connection; returns (status, headers, body)."""
    h = {"Host": hostport, "Connection": "close"}
    h.update(headers or {})
    if body or method in ("PUT", "POST"):
        h.setdefault("Content-Length", str(len(body)))
    path, _, query = target.partition("?")
    with RawConn(hostport, timeout_s) as c:
        c.send(build_request(method, path, query, h, body))
        r = c.read_response(method)
        return r.status, dict((k.lower(), v) for k, v in r.headers), r.body


class Signer:
    """Signs and sends raw requests to one server with given credentials."""

    def __init__(self, hostport, access_key, secret_key):
        self.hostport = hostport
        self.access_key = access_key
        self.secret_key = secret_key

    def headers(self, method, path, params=(), headers=None, body=b"", payload_hash=None,
                amz_date=None, content_length=True, **kw):
        h = dict(headers or {})
        if content_length and "Content-Length" not in h and "Transfer-Encoding" not in h:
            if body or method in ("PUT", "POST"):
                h["Content-Length"] = str(len(body))
        if payload_hash is None:
            payload_hash = sha256_hex(body)
        return sign_headers(method, self.hostport, path, list(params), h, payload_hash,
                            self.access_key, self.secret_key, amz_date=amz_date, **kw)

    def raw(self, method, path, params=(), headers=None, body=b"", payload_hash=None,
            amz_date=None, **kw):
        h = self.headers(method, path, params, headers, body, payload_hash, amz_date, **kw)
        query = canonical_query(list(params))
        return build_request(method, path, query, h, body)

    def request(self, method, path, params=(), headers=None, body=b"", payload_hash=None,
                amz_date=None, timeout_s=30.0, **kw):
        with RawConn(self.hostport, timeout_s) as c:
            c.send(self.raw(method, path, params, headers, body, payload_hash, amz_date, **kw))
            return c.read_response(method)


# ----------------------------------------------------------------------------
# Prometheus text parsing
# ----------------------------------------------------------------------------

_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Returns {(name, frozenset(labels.items())): value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line.strip())
        if not m:
            raise ValueError(f"unparseable metrics line: {line!r}")
        labels = frozenset(_LABEL_RE.findall(m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def metric(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def fetch_metrics(hostport):
    status, headers, body = http_request(hostport, "GET", "/metrics")
    assert status == 200, (status, body[:300])
    return body.decode(), headers


def which_debian(tool):
    """Debian's copy of a tool: /usr/bin first (PATH may hold a pyenv shim)."""
    for d in ("/usr/bin", "/usr/sbin", "/bin"):
        p = os.path.join(d, tool)
        if os.access(p, os.X_OK):
            return p
    return shutil.which(tool)


def content_md5(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()
