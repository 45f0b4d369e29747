// Duplication control plane: the structs of the meta server's duplication RPCs and of the
// replica -> meta progress sync. Field ids and types follow Pegasus's wire format
// (its idl/duplication.thrift); the optional hp_* (host_port) fields are left out.
// Fields typed dsn.* travel in rDSN's dialect (see rpc/wire.py).

include "dsn.thrift"

enum duplication_status {
    DS_INIT = 0,
    DS_PREPARE = 1,
    DS_APP = 2,
    DS_LOG = 3,
    DS_PAUSE = 4,
    DS_REMOVED = 5,
}

enum duplication_fail_mode {
    FAIL_SLOW = 0,
    FAIL_SKIP = 1,
    FAIL_FAST = 2,
}

// Declared by Pegasus, unused by it; kept so duplication_entry decodes field 10.
enum duplication_mode {
    FULL = 0,
    INCREMENTAL = 1,
}

// Pegasus's utils.pattern_match_type, used by duplication_list_request.
enum pattern_match_type {
    PMT_INVALID = 0,
    PMT_MATCH_ALL = 1,
    PMT_MATCH_EXACT = 2,
    PMT_MATCH_ANYWHERE = 3,
    PMT_MATCH_PREFIX = 4,
    PMT_MATCH_POSTFIX = 5,
    PMT_MATCH_REGEX = 6,
}

struct duplication_add_request {
    1: string app_name;
    2: string remote_cluster_name;
    3: optional bool is_duplicating_checkpoint = true;
    4: optional string remote_app_name;
    5: optional i32 remote_replica_count;
}

struct duplication_add_response {
    1: dsn.error_code err;
    2: i32 appid;
    3: i32 dupid;
    4: optional string hint;
    5: optional string remote_app_name;
    6: optional i32 remote_replica_count;
}

struct duplication_modify_request {
    1: string app_name;
    2: i32 dupid;
    3: optional duplication_status status;
    4: optional duplication_fail_mode fail_mode;
}

struct duplication_modify_response {
    1: dsn.error_code err;
    2: i32 appid;
}

struct duplication_partition_state {
    1: i64 confirmed_decree;
    2: i64 last_committed_decree;
}

struct duplication_entry {
    1: i32 dupid;
    2: duplication_status status;
    3: string remote;
    4: i64 create_ts;
    5: optional map<i32, i64> progress;
    7: optional duplication_fail_mode fail_mode;
    8: optional string remote_app_name;
    9: optional i32 remote_replica_count;
    10: optional duplication_mode mode;
    11: optional map<i32, duplication_partition_state> partition_states;
}

struct duplication_app_state {
    1: i32 appid;
    2: map<i32, duplication_entry> duplications;
    3: string app_name;
    4: i32 partition_count;
}

struct duplication_query_request {
    1: string app_name;
}

struct duplication_query_response {
    1: dsn.error_code err;
    3: i32 appid;
    4: list<duplication_entry> entry_list;
}

struct duplication_list_request {
    1: string app_name_pattern;
    2: pattern_match_type match_type;
}

struct duplication_list_response {
    1: dsn.error_code err;
    2: string hint_message;
    3: map<string, duplication_app_state> app_states;
}

struct duplication_confirm_entry {
    1: i32 dupid;
    2: i64 confirmed_decree;
    3: optional bool checkpoint_prepared = false;
    4: optional i64 last_committed_decree;
}

struct duplication_sync_request {
    1: dsn.rpc_address node;
    2: map<dsn.gpid, list<duplication_confirm_entry>> confirm_list;
}

struct duplication_sync_response {
    1: dsn.error_code err;
    2: map<i32, map<i32, duplication_entry>> dup_map;
}
