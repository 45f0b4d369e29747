// The meta server's RPCs: route discovery (query_cfg), table admin, node listing, cluster
// info and the duplication control plane. Field ids and types follow Pegasus's wire format
// (its idl/dsn.layer2.thrift and idl/meta_admin.thrift); the optional hp_* (host_port)
// fields are left out. Fields typed dsn.* travel in rDSN's dialect (see rpc/wire.py).

include "dsn.thrift"
include "duplication.thrift"

enum app_status {
    AS_INVALID = 0,
    AS_AVAILABLE = 1,
    AS_CREATING = 2,
    AS_CREATE_FAILED = 3,
    AS_DROPPING = 4,
    AS_DROP_FAILED = 5,
    AS_DROPPED = 6,
    AS_RECALLING = 7,
}

enum node_status {
    NS_INVALID = 0,
    NS_ALIVE = 1,
    NS_UNALIVE = 2,
}

struct partition_configuration {
    1: dsn.gpid pid;
    2: i64 ballot;
    3: i32 max_replica_count;
    4: dsn.rpc_address primary;
    5: list<dsn.rpc_address> secondaries;
    6: list<dsn.rpc_address> last_drops;
    7: i64 last_committed_decree;
    8: i32 partition_flags;
}

struct query_cfg_request {
    1: string app_name;
    2: list<i32> partition_indices;
}

// If err is ERR_FORWARD_TO_OTHERS, partitions[0].primary holds the leader's address.
struct query_cfg_response {
    1: dsn.error_code err;
    2: i32 app_id;
    3: i32 partition_count;
    4: bool is_stateful;
    5: list<partition_configuration> partitions;
}

struct app_info {
    1: app_status status = app_status.AS_INVALID;
    2: string app_type;
    3: string app_name;
    4: i32 app_id;
    5: i32 partition_count;
    6: map<string, string> envs;
    7: bool is_stateful;
    8: i32 max_replica_count;
    9: i64 expire_second;
    10: i64 create_second;
    11: i64 drop_second;
    12: optional bool duplicating = false;
    13: i32 init_partition_count = -1;
    14: optional bool is_bulk_loading = false;
    15: optional bool atomic_idempotent = false;
}

struct create_app_options {
    1: i32 partition_count;
    2: i32 replica_count;
    3: bool success_if_exist;
    4: string app_type;
    5: bool is_stateful;
    6: map<string, string> envs;
}

struct configuration_create_app_request {
    1: string app_name;
    2: create_app_options options;
}

struct configuration_create_app_response {
    1: dsn.error_code err;
    2: i32 appid;
}

struct drop_app_options {
    1: bool success_if_not_exist;
    2: optional i64 reserve_seconds;
}

struct configuration_drop_app_request {
    1: string app_name;
    2: drop_app_options options;
}

struct configuration_drop_app_response {
    1: dsn.error_code err;
}

struct configuration_list_apps_request {
    1: app_status status = app_status.AS_INVALID;
}

struct configuration_list_apps_response {
    1: dsn.error_code err;
    2: list<app_info> infos;
}

struct node_info {
    1: node_status status = node_status.NS_INVALID;
    2: dsn.rpc_address address;
}

struct configuration_list_nodes_request {
    1: node_status status = node_status.NS_INVALID;
}

struct configuration_list_nodes_response {
    1: dsn.error_code err;
    2: list<node_info> infos;
}

struct configuration_cluster_info_request {
}

struct configuration_cluster_info_response {
    1: dsn.error_code err;
    2: list<string> keys;
    3: list<string> values;
}

// dupkv's replica server heartbeat (Pegasus's config_sync, simplified for one replica per
// partition): a replica server reports what it stores; the meta answers with the tables it
// must serve, the partitions placed on it, and the partitions of dropped tables to delete.
struct replica_report {
    1: dsn.gpid pid;
    2: i64 last_committed_decree;
    3: i64 last_flushed_decree;
}

struct config_sync_request {
    1: dsn.rpc_address node;
    2: list<replica_report> stored_replicas;
}

struct config_sync_response {
    1: dsn.error_code err;
    2: list<app_info> apps;
    3: list<dsn.gpid> partitions;
    4: list<dsn.gpid> gc_replicas;
}

service meta {
    query_cfg_response query_cfg(1: query_cfg_request query);
    configuration_create_app_response create_app(1: configuration_create_app_request req);
    configuration_drop_app_response drop_app(1: configuration_drop_app_request req);
    configuration_list_apps_response list_apps(1: configuration_list_apps_request req);
    configuration_list_nodes_response list_nodes(1: configuration_list_nodes_request req);
    configuration_cluster_info_response query_cluster_info(
        1: configuration_cluster_info_request req);
    duplication.duplication_add_response add_duplication(
        1: duplication.duplication_add_request req);
    duplication.duplication_modify_response modify_duplication(
        1: duplication.duplication_modify_request req);
    duplication.duplication_query_response query_duplication(
        1: duplication.duplication_query_request req);
    duplication.duplication_list_response list_duplication(
        1: duplication.duplication_list_request req);
    duplication.duplication_sync_response duplication_sync(
        1: duplication.duplication_sync_request req);
    config_sync_response config_sync(1: config_sync_request req);
}
