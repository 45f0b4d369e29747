import pytest

from dupkv.base.config import Config, ConfigError

GOOD = """
[replication]
cluster_name = bjsrv-account
duplicate_log_batch_bytes = 8192   ; a comment
duplication_enabled = false

[meta_server]
meta_state_service_type = meta_state_service_zookeeper

[pegasus.clusters]
tjsrv-account = 127.0.0.1:35601, 127.0.0.1:35602

[duplication-group]
bjsrv-account = 1
tjsrv-account = 2
"""


def test_typed_values_defaults_and_maps():
    cfg = Config.parse(GOOD, "good.ini")
    assert cfg.cluster_name == "bjsrv-account"
    assert cfg.get("replication", "duplicate_log_batch_bytes") == 8192
    assert cfg.get("replication", "duplication_enabled") is False
    assert cfg.get("replication", "max_allowed_write_size") == 1 << 20
    assert cfg.clusters == {"tjsrv-account": ["127.0.0.1:35601", "127.0.0.1:35602"]}
    assert cfg.dup_group == {"bjsrv-account": 1, "tjsrv-account": 2}
    assert cfg.cluster_id() == 1
    assert cfg.cluster_root == "/pegasus/bjsrv-account"


@pytest.mark.parametrize(
    "text,message",
    [
        (
            "[replication]\nduplicate_log_batch_bytes = lots\n",
            r"\[replication\] duplicate_log_batch_bytes = 'lots': expected an integer",
        ),
        ("[replication]\nduplicate_log_batch_bytes = -1\n", "must be >= 0"),
        ("[replication]\nplog_force_flush = maybe\n", "expected true or false"),
        (
            "[replication]\nlog_shared_file_count_limit = 0\n",
            r"\[replication\] log_shared_file_count_limit = 0: must be >= 1",
        ),
        ("[replication]\nlog_shared_file_size_mb = 2048\n", "must be <= 1024"),
        (
            "[meta_server]\nmeta_state_service_type = etcd\n",
            "accepted values are meta_state_service_simple, meta_state_service_zookeeper",
        ),
        ("[duplication-group]\na = 1\nb = 1\n", "id already used by a"),
        ("[duplication-group]\na = 128\n", "cluster ids are 1..127"),
        ("[pegasus.clusters]\nremote = localhost\n", "is not host:port"),
        ("not an ini", "not a valid INI file"),
    ],
)
def test_bad_values_name_section_key_value_and_what_is_accepted(text, message):
    with pytest.raises(ConfigError, match=message):
        Config.parse(text, "bad.ini")


def test_unknown_keys_warn_and_overrides_apply():
    cfg = Config.parse(
        "[replication]\nduplicate_log_batch = 1\n", "t.ini", {("apps.replica", "ports"): "34802"}
    )
    assert any("duplicate_log_batch is not a known key" in w for w in cfg.warnings)
    assert cfg.get("apps.replica", "ports") == 34802


def test_require_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cluster_name must be set"):
        Config.parse("").require("replication", "cluster_name")
    with pytest.raises(ConfigError, match="cannot read config file"):
        Config.load(tmp_path / "nope.ini")


def test_address_map_section():
    cfg = Config.parse("[duplication.address_map]\n127.0.0.1:35801 = 127.0.0.1:45801\n")
    assert cfg.address_map == {"127.0.0.1:35801": "127.0.0.1:45801"}
    with pytest.raises(ConfigError, match="is not host:port"):
        Config.parse("[duplication.address_map]\n127.0.0.1:35801 = nowhere\n")
