"""Duplication end to end between two real clusters on 127.0.0.1."""

import random
import threading
import time

import pytest
from support.dup import SOURCE, TARGET, add_dup, dump, wait_equal

from dupkv.base.errors import ErrorCode


def test_one_way_puts_multi_puts_removes_and_ttls_all_arrive(clients, clusters):
    ca, cb = clients
    ca.create_table("oneway", partition_count=8)
    cb.create_table("oneway", partition_count=4)
    add_dup(ca, "oneway", TARGET)
    time.sleep(1.5)  # let the replicas learn about the duplication
    t = ca.open_table("oneway")
    rng = random.Random(7)
    expected: dict[tuple[bytes, bytes], bytes] = {}
    for i in range(3000):
        hk = b"h%d" % rng.randrange(800)
        op = rng.random()
        if op < 0.6:
            sk, v = b"s%d" % rng.randrange(5), b"v%d" % i
            t.set(hk, sk, v, ttl_seconds=3600 if i % 7 == 0 else 0)
            expected[(hk, sk)] = v
        elif op < 0.8:
            kvs = {b"m%d" % j: b"mv%d.%d" % (i, j) for j in range(3)}
            t.multi_set(hk, kvs)
            expected.update({(hk, sk): v for sk, v in kvs.items()})
        else:
            sk = b"s%d" % rng.randrange(5)
            t.delete(hk, sk)
            expected.pop((hk, sk), None)
    wait_equal(ca, cb, "oneway", "oneway", expected=expected)
    tb = cb.open_table("oneway")
    for (hk, sk), _ in list(expected.items())[:200]:
        ta_ttl, tb_ttl = t.ttl(hk, sk), tb.ttl(hk, sk)
        assert (ta_ttl == -1) == (tb_ttl == -1) and abs(ta_ttl - tb_ttl) <= 2


@pytest.mark.parametrize("counts", [(4, 8), (8, 2)])
def test_any_partition_counts_deliver_every_key(clients, counts):
    ca, cb = clients
    src, dst = counts
    app = f"parts_{src}_{dst}"
    ca.create_table(app, partition_count=src)
    cb.create_table(app, partition_count=dst)
    add_dup(ca, app, TARGET)
    time.sleep(1.5)
    t = ca.open_table(app)
    expected = {}
    for i in range(1000):
        t.set(b"key%d" % i, b"s", b"v%d" % i)
        expected[(b"key%d" % i, b"s")] = b"v%d" % i
    wait_equal(ca, cb, app, app, expected=expected)
    # Reads at the remote route by hash: every key is in the partition its hash selects.
    tb = cb.open_table(app)
    for i in range(0, 1000, 37):
        assert tb.get(b"key%d" % i, b"s") == b"v%d" % i


def test_master_master_converges_deletes_included(clients):
    ca, cb = clients
    app = "mm"
    ca.create_table(app, partition_count=4)
    cb.create_table(app, partition_count=4)
    add_dup(ca, app, TARGET)
    add_dup(cb, app, SOURCE)
    time.sleep(1.5)
    ta, tb = ca.open_table(app), cb.open_table(app)
    keys = [b"k%d" % i for i in range(60)]

    def writer(table, seed):
        rng = random.Random(seed)
        for i in range(1500):
            hk = rng.choice(keys)
            r = rng.random()
            if r < 0.5:
                table.set(hk, b"s", b"%d-%d" % (seed, i))
            elif r < 0.8:
                table.delete(hk, b"s")
            else:
                table.set(hk, b"s", b"ttl-%d" % i, ttl_seconds=600)

    threads = [threading.Thread(target=writer, args=(t, s)) for t, s in ((ta, 1), (tb, 2))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    final = wait_equal(ca, cb, app, app)
    # Deletes made last, on one side only, win everywhere and stay deleted.
    doomed = keys[:20]
    for hk in doomed:
        ta.delete(hk, b"s")
    final = wait_equal(ca, cb, app, app)
    assert not any((hk, b"s") in final for hk in doomed)
    time.sleep(2)
    assert dump(ca, app) == dump(cb, app) == final


def test_bad_requests_get_the_right_error_codes(clients):
    ca, cb = clients
    ca.create_table("errs", partition_count=2)
    from dupkv.rpc.idl_meta import dup

    def add(app, remote):
        return ca.meta_call(
            "RPC_CM_ADD_DUPLICATION",
            dup.duplication_add_request(
                app_name=app, remote_cluster_name=remote, is_duplicating_checkpoint=False
            ),
        )

    assert add("errs", "nowhere").err == ErrorCode.INVALID_PARAMETERS
    assert add("errs", SOURCE).err == ErrorCode.INVALID_PARAMETERS  # itself
    assert add("missing_table", TARGET).err == ErrorCode.APP_NOT_EXIST
    assert add("errs", TARGET).err == ErrorCode.APP_NOT_EXIST  # not created at the remote
    cb.create_table("errs", partition_count=2)
    first = add("errs", TARGET)
    assert first.err == ErrorCode.OK
    again = add("errs", TARGET)
    assert again.err == ErrorCode.DUP_EXIST and again.dupid == first.dupid
