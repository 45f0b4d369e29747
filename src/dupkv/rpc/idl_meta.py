"""Loads the meta server's IDL (pure: no IO beyond reading the IDL files once at import).

`meta` is the module of the meta structs, enums and the `meta` service (query_cfg, table
admin, nodes, cluster info, duplication RPCs); `dup` is the duplication module it includes
(duplication_status, duplication_fail_mode, the duplication request/response structs), so
both name the very same classes the service's args and results use.

Fields typed gpid/rpc_address are plain ints here; see `dupkv.rpc.ids` to pack and unpack.
"""

from typing import Any

import thriftpy2

from dupkv.rpc.thrift import IDL_DIR

meta: Any = thriftpy2.load(str(IDL_DIR / "meta.thrift"), module_name="meta_thrift")
dup: Any = meta.duplication
