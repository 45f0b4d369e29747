"""The server entity's process gauges, read from /proc/self/statm on each collect."""

import pytest

from dupkv.metrics import Registry, install_process_metrics, parse_query, snapshot
from dupkv.metrics.process import PAGE_BYTES, parse_statm


def test_parse_statm_reads_pages_as_megabytes():
    assert parse_statm("262144 25600 1000 10 0 5000 0\n", 4096) == (1024, 100)
    with pytest.raises(ValueError, match="unexpected statm"):
        parse_statm("garbage", 4096)


def test_gauges_refresh_on_collect_from_the_file(tmp_path):
    statm = tmp_path / "statm"
    statm.write_text("2560 512 0 0 0 0 0\n")
    r = Registry("replica", "onebox", "h", 1)
    install_process_metrics(r, str(statm))
    install_process_metrics(r, str(statm))  # idempotent
    server = r.get_entity("server", "server")
    assert [m.name for m in server.metrics()] == ["resident_mem_usage_mb", "virtual_mem_usage_mb"]
    assert server.get("resident_mem_usage_mb").value == 0  # nothing read before a collect
    r.collect()
    assert server.get("resident_mem_usage_mb").value == 512 * PAGE_BYTES // 2**20
    assert server.get("virtual_mem_usage_mb").value == 2560 * PAGE_BYTES // 2**20
    statm.unlink()
    r.collect()  # no /proc: the gauges keep their last figures
    assert server.get("virtual_mem_usage_mb").value == 2560 * PAGE_BYTES // 2**20


def test_real_proc_gives_a_plausible_resident_size():
    r = Registry("replica", "onebox", "h", 1)
    install_process_metrics(r)
    r.collect()
    (entity,) = snapshot(r, parse_query({"types": "server"}), 0)["entities"]
    values = {m["name"]: m["value"] for m in entity["metrics"]}
    assert 1 <= values["resident_mem_usage_mb"] <= values["virtual_mem_usage_mb"]
