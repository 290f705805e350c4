"""A linearizability checker for histories of a read/write register (Wing-Gong search with
Lowe's memoization), used per key by test_cluster.py; its own tests are test_linearizability.py.

A history is a list of Op. Each op has a start and an end time (any comparable numbers, e.g.
time.monotonic() taken by the client just before sending and just after the answer) and:
  kind    "write" or "read"
  value   for a write the value written; for a read the value returned (None = absent)
  status  "ok"       the op took effect exactly once, somewhere between start and end;
          "fail"     the op certainly had no effect (a write refused before it was sent, a
                     4xx); failed ops are dropped from the history;
          "unknown"  a write that may or may not have taken effect, at any time after its start
                     (a timeout, a 5xx, a connection lost mid-request): its end is taken as
                     infinity, and it may also never take effect. Reads with no answer carry no
                     information and are dropped.

The history is linearizable when there is a total order of the ok ops (and of any subset of the
unknown writes) that respects real time (an op that ended before another started comes first)
and in which every read returns the value of the latest write before it (or the initial value).

Search (Lowe, "Testing for linearizability", 2017; the same as porcupine): the call and return
events sorted by time form a list; repeatedly take the first call in the list whose op can be
applied to the current register state, linearize it (remove its call and return) and restart
from the head; when a return is reached whose op is not yet linearized, undo the last choice.
A set of (linearized ops, state) pairs already explored cuts repeated work. Equal times count
as overlapping (calls sort before returns), so ties never cause a false failure.

Unknown writes: a write is always legal, so one left pending at the end can be linearized last
(or dropped, which has the same effect on every completed op); the search therefore succeeds
once every op with a finite return is linearized.
"""

import math


class Op:
    __slots__ = ("kind", "value", "start", "end", "status", "info")

    def __init__(self, kind, value, start, end, status="ok", info=None):
        assert kind in ("read", "write"), kind
        assert status in ("ok", "fail", "unknown"), status
        assert end is None or start <= end, (start, end)
        self.kind = kind
        self.value = value
        self.start = start
        self.end = end
        self.status = status
        self.info = info  # free text for failure reports (thread, node, ...)

    def __repr__(self):
        end = "inf" if self.end is None or self.status == "unknown" else f"{self.end:.4f}"
        return (f"{self.kind}({_short(self.value)}) [{self.start:.4f}, {end}] {self.status}"
                + (f" {self.info}" if self.info else ""))


def _short(value):
    text = repr(value)
    return text if len(text) <= 14 else text[:12] + ".."


class SearchLimit(RuntimeError):
    """The search exceeded its step budget: the result is inconclusive, not a pass."""


class _Entry:
    __slots__ = ("is_call", "op_id", "time", "match", "prev", "next")

    def __init__(self, is_call, op_id, time):
        self.is_call = is_call
        self.op_id = op_id
        self.time = time
        self.match = None
        self.prev = None
        self.next = None


def _prepare(history):
    """Drops what carries no information: failed ops, unanswered reads, and unknown writes whose
    value no read returned (placing such a write anywhere only hides the previous value from
    reads that did not look, so leaving it out never turns a legal history illegal; it keeps
    the search from branching over every subset of unobserved unknown writes)."""
    read_values = {op.value for op in history if op.kind == "read" and op.status == "ok"}
    ops = []
    for op in history:
        if op.status == "fail":
            continue
        if op.kind == "read" and op.status != "ok":
            continue
        if op.kind == "write" and op.status == "unknown" and op.value not in read_values:
            continue
        ops.append(op)
    return ops


def check(history, initial=None, max_steps=2_000_000):
    """Returns (True, None) if history is linearizable, else (False, explanation).

    Raises SearchLimit if max_steps choices were tried without an answer."""
    ops = _prepare(history)
    if not ops:
        return True, None
    events = []
    for i, op in enumerate(ops):
        end = math.inf if op.status == "unknown" else op.end
        call = _Entry(True, i, op.start)
        ret = _Entry(False, i, end)
        call.match = ret
        events.append((op.start, 0, i, call))
        events.append((end, 1, i, ret))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    head = _Entry(True, -1, -math.inf)  # sentinel
    prev = head
    for _, _, _, e in events:
        prev.next = e
        e.prev = prev
        prev = e

    def lift(call):
        call.prev.next = call.next
        if call.next is not None:
            call.next.prev = call.prev
        ret = call.match
        ret.prev.next = ret.next
        if ret.next is not None:
            ret.next.prev = ret.prev

    def unlift(call):
        ret = call.match
        ret.prev.next = ret
        if ret.next is not None:
            ret.next.prev = ret
        call.prev.next = call
        if call.next is not None:
            call.next.prev = call

    state = initial
    linearized = 0
    finite_left = sum(1 for op in ops if op.status == "ok")
    stack = []  # (call entry, state before it)
    seen = set()
    best_prefix = []
    entry = head.next
    for _ in range(max_steps):
        if finite_left == 0:
            return True, None  # what remains are unknown writes: linearize them last
        if entry is None or entry.time == math.inf and not entry.is_call:
            # Cannot happen: an unlinearized finite return always comes first.
            raise AssertionError("linearizability search ran off the event list")
        if entry.is_call:
            op = ops[entry.op_id]
            if op.kind == "write":
                legal, new_state = True, op.value
            else:
                legal, new_state = op.value == state, state
            if legal:
                new_linearized = linearized | (1 << entry.op_id)
                key = (new_linearized, new_state)
                if key not in seen:
                    seen.add(key)
                    stack.append((entry, state))
                    state = new_state
                    linearized = new_linearized
                    if op.status == "ok":
                        finite_left -= 1
                    lift(entry)
                    if len(stack) > len(best_prefix):
                        best_prefix = [ops[c.op_id] for c, _ in stack]
                    entry = head.next
                    continue
            entry = entry.next
        else:
            # An op returned before it could be linearized: undo the last choice.
            if not stack:
                return False, _explain(ops, best_prefix, initial)
            call, state = stack.pop()
            linearized &= ~(1 << call.op_id)
            if ops[call.op_id].status == "ok":
                finite_left += 1
            unlift(call)
            entry = call.next
    raise SearchLimit(f"no answer after {max_steps} steps over {len(ops)} ops")


def _explain(ops, best_prefix, initial):
    placed = set(id(o) for o in best_prefix)
    rest = sorted((o for o in ops if id(o) not in placed), key=lambda o: o.start)
    lines = [f"not linearizable (initial value {initial!r}); longest legal prefix "
             f"({len(best_prefix)} of {len(ops)} ops):"]
    lines += [f"  {o!r}" for o in best_prefix[-8:]]
    lines.append("ops that could not be placed after it (by start):")
    lines += [f"  {o!r}" for o in rest[:12]]
    return "\n".join(lines)


def check_keys(history_by_key, initial=None, max_steps=2_000_000):
    """Checks every key's history on its own (a register per key is P-compositional).
    Returns a list of (key, explanation) for the keys that are not linearizable."""
    bad = []
    for key in sorted(history_by_key):
        ok, why = check(history_by_key[key], initial=initial, max_steps=max_steps)
        if not ok:
            bad.append((key, why))
    return bad
