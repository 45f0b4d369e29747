"""SIGKILL a writing process at random points; every acknowledged write must survive and no
multi-key mutation may be half applied."""

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.crash_writer import (
    recover_shared,
    shared_options,
    shared_partition_of,
    shared_paths,
)
from support.power_cut import lose_what_the_slog_holds

from dupkv.replica.partition import Partition, PartitionOptions
from dupkv.storage import schema

WRITER = Path(__file__).resolve().parents[2] / "support" / "crash_writer.py"
SORT_KEYS = (b"a", b"b", b"c")


def run_and_kill(path: Path, seed: int, run_seconds: float, *mode: str) -> set[int]:
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(path), str(seed), *mode],
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


def check(path: Path, acked: set[int], options: PartitionOptions | None = None) -> None:
    p = Partition(path, options or PartitionOptions(plog_segment_bytes=64 << 10))
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


@pytest.mark.parametrize("seed", range(4))
def test_power_loss_with_the_shared_log_loses_no_acknowledged_write(tmp_path, seed):
    """Three partitions commit through a shared log (checkpoints included); after SIGKILL,
    the plog bytes that only the slog made durable are damaged as a power cut could, and
    the repair from the slog must bring back every acknowledged write."""
    rng = random.Random(seed)
    root = tmp_path / "s"
    slog_dir, parts = shared_paths(root)
    for round_ in range(2):
        acked = run_and_kill(root, seed * 10 + round_, rng.uniform(0.5, 1.5), "shared")
        assert acked, "the writer acknowledged nothing before it was killed"
        damage = lose_what_the_slog_holds(slog_dir, lambda gpid: parts[gpid[1]] / "plog", rng)
        recover_shared(root)
        for k, path in enumerate(parts):
            mine = {i for i in acked if shared_partition_of(i) == k}
            try:
                check(path, mine, shared_options(k))
            except AssertionError as e:
                raise AssertionError(f"after {damage}: {e}") from e
