"""pytest fixtures for tern's integration tests: real ternd processes on free ports.

Fixtures:
  ternd         one server per test module (--no-sync: the fast path for functional tests)
  fresh_ternd   one server per test, with sync on
  ternd_factory make more servers inside a test: ternd_factory(sync=..., extra_args=...,
                credentials=True); each is stopped with SIGTERM at the end and must exit 0
  s3            a boto3 client for the module server
Each server has a fresh temp data dir; a server keeps its handle (ternlib.Ternd) with
restart(crash=False|True) and kill() for crash tests.

Run by ctest (`ctest -L integration`, which sets TERND, TERNCTL and TERN_SOURCE_DIR), or by
hand: TERND=build/ternd TERNCTL=build/ternctl /usr/bin/python3 -m pytest tests/integration
(Debian's python: it sees python3-boto3, python3-requests and python3-pytest).
"""

import os
import signal

import pytest

import ternlib


def _stop_checked(server):
    """SIGTERM and assert a clean exit (code 0). A server already killed on purpose is skipped."""
    if server.proc is None or server.proc.poll() is not None:
        return
    rc = server.stop(signal.SIGTERM, timeout_s=30.0)
    assert rc == 0, f"ternd exited with {rc} on SIGTERM; log tail:\n{server.log_tail()}"


@pytest.fixture(scope="session")
def ternd_binary():
    path = ternlib.ternd_binary()
    if not os.access(path, os.X_OK):
        pytest.fail(f"ternd not found at {path} (set TERND)")
    return path


class _Factory:
    def __init__(self, base_dir):
        self.base_dir = base_dir
        self.servers = []

    def __call__(self, sync=False, extra_args=(), credentials=True, start=True, **kw):
        n = len(self.servers)
        data_dir = os.path.join(self.base_dir, f"data{n}")
        log_dir = os.path.join(self.base_dir, f"logs{n}")
        os.makedirs(log_dir, exist_ok=True)
        if credentials:
            server = ternlib.Ternd(data_dir, log_dir, sync=sync, extra_args=extra_args, **kw)
        else:
            server = ternlib.Ternd(data_dir, log_dir, sync=sync, extra_args=extra_args,
                                   access_key=None, secret_key=None, **kw)
        self.servers.append(server)
        if start:
            server.start()
        return server

    def finish(self):
        errors = []
        for server in self.servers:
            try:
                _stop_checked(server)
            except AssertionError as e:
                errors.append(str(e))
            except Exception as e:  # a stuck server: make sure it is gone, then report
                server.kill()
                errors.append(f"{type(e).__name__}: {e}")
        assert not errors, "\n".join(errors)


@pytest.fixture(scope="module")
def _module_factory(tmp_path_factory, ternd_binary):
    factory = _Factory(str(tmp_path_factory.mktemp("ternd-module")))
    yield factory
    factory.finish()


@pytest.fixture
def ternd_factory(tmp_path, ternd_binary):
    factory = _Factory(str(tmp_path))
    yield factory
    factory.finish()


@pytest.fixture(scope="module")
def ternd(_module_factory):
    server = _module_factory(sync=False)
    yield server
    # Checked again (exit code 0) by the module factory's finish().


@pytest.fixture
def fresh_ternd(ternd_factory):
    return ternd_factory(sync=True)


@pytest.fixture(autouse=True)
def _module_server_alive(request):
    """Fails the test during which the module server died, and replaces it so that one
    crash does not turn every later test of the module into an error."""
    yield
    if "ternd" not in request.fixturenames:
        return
    server = request.getfixturevalue("ternd")
    if server.proc is not None and server.proc.poll() is not None:
        rc = server.proc.returncode
        tail = server.log_tail(60)
        server.data_dir = server.data_dir + "-after-crash"
        server.start()
        pytest.fail(f"ternd died (exit {rc}) during this test; log tail:\n{tail}")


@pytest.fixture(scope="module")
def s3(ternd):
    return ternd.client()


@pytest.fixture
def bucket(s3):
    """A new, empty bucket on the module server."""
    name = ternlib.unique_name("t")
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def signer(ternd):
    return ternlib.Signer(ternd.hostport, ternd.access_key, ternd.secret_key)
