"""SIGKILL a writing process at random points; every acknowledged write must survive and no
multi-key mutation may be half applied."""

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dupkv.replica.partition import Partition, PartitionOptions
from dupkv.storage import schema

WRITER = Path(__file__).resolve().parents[2] / "support" / "crash_writer.py"
SORT_KEYS = (b"a", b"b", b"c")


def run_and_kill(path: Path, seed: int, run_seconds: float) -> set[int]:
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(path), str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == b"ready\n", (line, proc.stderr.read() if proc.poll() is not None else b"")
        time.sleep(run_seconds)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    acked = set()
    for line in proc.stdout.read().splitlines():
        if line.startswith(b"ack "):
            acked.add(int(line[4:]))
    proc.stdout.close()
    proc.stderr.close()
    return acked


def check(path: Path, acked: set[int]) -> None:
    p = Partition(path, PartitionOptions(plog_segment_bytes=64 << 10))
    try:
        top = max(acked) + 2000
        removed_by_ack = {i - 5 for i in acked if i % 10 == 9}
        for i in range(top):
            if i % 10 == 9:
                continue
            values = [p.get(schema.encode_key(b"h%d" % i, sk)) for sk in SORT_KEYS]
            present = [r.error == 0 for r in values]
            # No half-applied mutation: a multi_put's keys are all there or all gone.
            assert all(present) or not any(present), (i, present)
            if all(present):
                assert {r.value for r in values} == {b"v%d" % i}
            # Ops with i % 10 == 4 are removed by op i + 5, which may have run unacknowledged.
            if i in acked and i % 10 != 4:
                assert all(present), f"acknowledged op {i} is missing after the crash"
            if i in removed_by_ack:
                assert not any(present), f"acknowledged remove of op {i} was undone"
    finally:
        p.close()


@pytest.mark.parametrize("seed", range(6))
def test_sigkill_loses_no_acknowledged_write(tmp_path, seed):
    rng = random.Random(seed)
    path = tmp_path / "p"
    # Two crashes in a row on the same partition: recovery itself must leave a sound state.
    for round_ in range(2):
        acked = run_and_kill(path, seed * 10 + round_, rng.uniform(0.3, 1.5))
        assert acked, "the writer acknowledged nothing before it was killed"
        check(path, acked)
