"""Claims on runs: one holder at a time across processes, heartbeats, takeover of stale claims."""
import json
import multiprocessing as mp
import os
import time

import pytest

from claim_files import forge
from hashbench.claims import Claims, ShortLock


def _race(out, stem, barrier, results, stale_token=None):
    barrier.wait()
    ok, _, why = Claims(out, timeout=1.0).acquire(stem, "r")
    results.put((os.getpid(), ok, why))
    time.sleep(0.5)  # hold on while the others try: a release must not let a second one in


def _racers(out, stem, n=6):
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(out), stem, barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    got = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
    return got


def test_of_processes_claiming_one_run_at_once_exactly_one_wins(tmp_path):
    got = _racers(tmp_path, "abc-8-0")
    assert sum(ok for _, ok, _ in got) == 1
    body = json.loads((tmp_path / "claims" / "abc-8-0.claim").read_text())
    assert body["pid"] in [pid for pid, ok, _ in got if ok]


def test_of_processes_taking_over_one_stale_claim_exactly_one_wins(tmp_path):
    forge(tmp_path, "abc-8-0", age=60)
    got = _racers(tmp_path, "abc-8-0")
    winners = [(pid, why) for pid, ok, why in got if ok]
    assert len(winners) == 1 and "no heartbeat for 60 s" in winners[0][1], got
    assert json.loads((tmp_path / "claims" / "abc-8-0.claim").read_text())["pid"] == winners[0][0]


def test_a_live_claim_is_refused_with_its_holder_and_a_stale_one_taken_over(tmp_path):
    forge(tmp_path, "abc-8-0", age=1, timeout=5)
    claims = Claims(tmp_path, timeout=300)
    ok, holder, _ = claims.acquire("abc-8-0")
    assert not ok and holder["owner"] == "node7:12345" and 0.5 < holder["age"] < 4
    forge(tmp_path, "abc-8-0", age=6, timeout=5)  # past the holder's own timeout, though not ours
    ok, holder, why = claims.acquire("abc-8-0")
    assert ok and holder is None and why.startswith("no heartbeat for 6 s") and claims.holds("abc-8-0")


def test_a_claim_of_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path):
    from hashbench.atomic import _host_tag

    p = mp.get_context("fork").Process(target=os._exit, args=(0,))
    p.start()
    p.join()
    forge(tmp_path, "abc-8-0", age=0, host_tag=_host_tag(), pid=p.pid, timeout=300)
    ok, _, why = Claims(tmp_path).acquire("abc-8-0")
    assert ok and why == f"its process ({'node7'} pid {p.pid}) no longer runs"


def test_the_same_worker_restarted_takes_its_own_claim_back(tmp_path, monkeypatch):
    forge(tmp_path, "abc-8-0", age=0, timeout=300)
    path = tmp_path / "claims" / "abc-8-0.claim"
    body = json.loads(path.read_text())
    path.write_text(json.dumps({**body, "owner": "slurm:991_3"}) + "\n")
    assert not Claims(tmp_path).acquire("abc-8-0")[0]
    monkeypatch.setenv("HASHBENCH_WORKER_ID", "slurm:991_3")  # the requeued task
    ok, _, why = Claims(tmp_path).acquire("abc-8-0")
    assert ok and "earlier run of this worker" in why


def test_heartbeats_keep_a_claim_alive_and_close_releases_it(tmp_path):
    claims = Claims(tmp_path, timeout=0.6).start()
    assert claims.acquire("abc-8-0")[0]
    time.sleep(1.5)  # more than twice the timeout
    other = Claims(tmp_path, timeout=0.6)
    ok, holder, _ = other.acquire("abc-8-0")
    assert not ok and holder["age"] < 0.6 and holder["pid"] == os.getpid()
    claims.close()
    assert not (tmp_path / "claims" / "abc-8-0.claim").exists()
    assert other.acquire("abc-8-0")[0]


def test_a_claim_taken_over_is_no_longer_held_and_its_release_leaves_the_new_one(tmp_path):
    slow = Claims(tmp_path, timeout=0.2)  # no heartbeat thread: a stalled worker
    assert slow.acquire("abc-8-0")[0] and slow.holds("abc-8-0")
    path = tmp_path / "claims" / "abc-8-0.claim"
    os.utime(path, (time.time() - 5,) * 2)
    body = json.loads(path.read_text())
    path.write_text(json.dumps({**body, "host_tag": "elsewhere"}) + "\n")  # as if on another machine
    os.utime(path, (time.time() - 5,) * 2)
    taker = Claims(tmp_path, timeout=0.2)
    assert taker.acquire("abc-8-0")[0]
    assert not slow.holds("abc-8-0")
    slow.release("abc-8-0")
    assert taker.holds("abc-8-0") and path.exists()


def test_failure_markers_carry_the_command_and_the_error(tmp_path):
    claims = Claims(tmp_path, run_id="run-1")
    claims.fail("abc-8-0", "lsh 8 bits seed 0", "ValueError: bad\nsecond line")
    info = claims.failure("abc-8-0")
    assert info["run_id"] == "run-1" and info["error"] == "ValueError: bad" and info["run"] == "lsh 8 bits seed 0"
    claims.clear_failure("abc-8-0")
    assert claims.failure("abc-8-0") is None


def _append_many(out, n, tag):
    from hashbench.results import ResultStore

    store = ResultStore(out)
    for i in range(n):
        store.append(dict(method=tag, dataset="d", bits=8, seed=i, pad="x" * 5000))


@pytest.mark.parametrize("writers", [4])
def test_records_appended_by_several_processes_never_interleave(tmp_path, writers):
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(tmp_path, 25, f"m{w}")) for w in range(writers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 25 * writers
    assert sorted((r["method"], r["seed"]) for r in map(json.loads, lines)) == \
        sorted((f"m{w}", i) for w in range(writers) for i in range(25))
    assert not list((tmp_path / "claims").glob("*.claim"))


def test_a_short_lock_left_by_a_dead_process_is_taken(tmp_path):
    from hashbench.atomic import _host_tag

    p = mp.get_context("fork").Process(target=os._exit, args=(0,))
    p.start()
    p.join()
    forge(tmp_path, ".records", age=0, host_tag=_host_tag(), pid=p.pid, timeout=60)
    t = time.perf_counter()
    with ShortLock(tmp_path):
        assert json.loads((tmp_path / "claims" / ".records.claim").read_text())["pid"] == os.getpid()
    assert time.perf_counter() - t < 5 and not (tmp_path / "claims" / ".records.claim").exists()
