// rDSN base types as they travel on the wire (our own description of Pegasus's encoding).
// blob, error_code and task_code are Thrift strings; gpid and rpc_address are packed i64:
//   gpid        = (partition_index << 32) | app_id
//   rpc_address = (ipv4 << 32) | (port << 16) | 1

typedef binary blob
typedef string error_code
typedef string task_code
typedef i64 gpid
typedef i64 rpc_address
