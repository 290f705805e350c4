"""Shutdown with work still in flight: ternd exits cleanly, whatever is running."""
import ternlib


class _DelayedScrubTernd(ternlib.Ternd):
    """A ternd whose scrub steps take delay_ms (TERN_TEST_SCRUB_DELAY_MS, a test hook)."""

    def __init__(self, *args, delay_ms, **kw):
        super().__init__(*args, **kw)
        self.delay_ms = delay_ms

    def _env(self):
        env = super()._env()
        env["TERN_TEST_SCRUB_DELAY_MS"] = str(self.delay_ms)
        return env


def test_sigterm_during_a_scrub_step(tmp_path):
    # A scrub step still on the thread pool when SIGTERM arrives finishes after the region
    # group has closed; its result must not be handed to the closed group (this crashed with
    # SIGSEGV, seen as "node 3 exited with -11 on SIGTERM" in the cluster tests).
    (tmp_path / "logs").mkdir()
    t = _DelayedScrubTernd(tmp_path / "data", tmp_path / "logs", delay_ms=2000)
    t.start()
    try:
        ternlib.wait_until(lambda: "step delayed" in t.log_text(), 30,
                           what="a scrub step to start")
        rc = t.stop()
    finally:
        if t.running():
            t.kill()
    assert rc == 0, f"ternd exited with {rc}:\n{t.log_tail()}"
    assert "stopped cleanly" in t.log_text()
