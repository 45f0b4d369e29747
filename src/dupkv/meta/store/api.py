"""The metadata-store contract: errors, operations, limits and path rules (pure core).

The meta server keeps its state in a tree of nodes with ZooKeeper's semantics and Pegasus's
layout (`<cluster_root>/apps/<app_id>/...`). Every backend implements `MetaStore`; this module
owns what they share and imports no asyncio, sqlite or kazoo, so both backends accept and
reject exactly the same inputs:

- A path is absolute and "/"-separated, with no empty, "." or ".." segment, no trailing "/",
  and no character ZooKeeper refuses. A store serves one subtree, its *root* (the cluster
  root); a path outside it is bad input, and so is deleting the root itself.
- Data is bytes produced by the caller (JSON, decimal strings); the store never looks inside.
- `commit` applies `Create`/`Set`/`Delete` in order, all or nothing, with ZooKeeper's `multi`
  rules: a create needs its parent (existing or created earlier in the same commit), a set
  needs the node, a delete needs the node and removes only a leaf.
- Calls take effect in the order they were made, also when a caller issues several without
  awaiting each (a later progress write never loses to an earlier one).

Errors carry rDSN codes as Pegasus's `meta_state_service` reports them (`from_zerror`):
`NoNode` ERR_OBJECT_NOT_FOUND, `NodeExists` ERR_NODE_ALREADY_EXIST, `NotEmpty`
ERR_INVALID_PARAMETERS, `StoreUnavailable` ERR_TIMEOUT. A write that failed with
`StoreUnavailable` may still have been applied: its outcome is unknown.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from dupkv.base.errors import BadInput, DupkvError, ErrorCode

# Limits shared by both backends. ZooKeeper refuses a request above jute.maxbuffer (1 MiB by
# default), so one node and one commit stay well below it.
MAX_PATH_BYTES = 1024
MAX_DATA_BYTES = 512 * 1024
MAX_COMMIT_OPS = 1000
MAX_COMMIT_BYTES = 768 * 1024

ERR_NODE_ALREADY_EXIST = "ERR_NODE_ALREADY_EXIST"
ERR_ZOOKEEPER_OPERATION = "ERR_ZOOKEEPER_OPERATION"


class StoreError(DupkvError):
    """An operating error of the metadata store; `path` is the node concerned, if any."""

    code_name = ErrorCode.UNKNOWN

    def __init__(self, path: str = "", hint: str = "", *, code: str = "") -> None:
        text = f"{path}: {hint}" if path and hint else path or hint
        super().__init__(code or self.code_name, text)
        self.path = path


class NoNode(StoreError):
    """The node (or, for a create, its parent) does not exist."""

    code_name = ErrorCode.OBJECT_NOT_FOUND


class NodeExists(StoreError):
    """A create found the node already there."""

    code_name = ERR_NODE_ALREADY_EXIST


class NotEmpty(StoreError):
    """A non-recursive delete found children under the node."""

    code_name = ErrorCode.INVALID_PARAMETERS


class StoreUnavailable(StoreError):
    """The store did not answer within its timeout, lost its connection, or is closed."""

    code_name = ErrorCode.TIMEOUT


@dataclass(frozen=True, slots=True)
class Create:
    path: str
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Set:
    path: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete a leaf inside a commit (outside one, `MetaStore.delete` can recurse)."""

    path: str


Op = Create | Set | Delete


@runtime_checkable
class MetaStore(Protocol):
    """A tree of byte-valued nodes under one root; every call is bounded by a timeout."""

    @property
    def root(self) -> str: ...

    async def create(self, path: str, data: bytes = b"", *, make_parents: bool = True) -> None:
        """Create a node; NodeExists if present, NoNode if the parent is missing and
        `make_parents` is False (missing ancestors are otherwise created with empty data)."""
        ...

    async def set(self, path: str, data: bytes) -> None:
        """Replace a node's data; NoNode if absent."""
        ...

    async def get(self, path: str) -> bytes | None:
        """A node's data, or None if absent."""
        ...

    async def exists(self, path: str) -> bool: ...

    async def children(self, path: str) -> list[str]:
        """Names of the node's children, sorted; NoNode if the node is absent."""
        ...

    async def delete(self, path: str, *, recursive: bool = True) -> None:
        """Delete a node (and its subtree when `recursive`); no error if absent, NotEmpty if
        it has children and `recursive` is False."""
        ...

    async def commit(self, ops: Sequence[Op]) -> None:
        """Apply the operations in order, atomically: all of them or none."""
        ...

    async def close(self) -> None:
        """Release the store; later calls raise StoreUnavailable. Idempotent."""
        ...


# Characters ZooKeeper's PathUtils.validatePath refuses (besides "/" rules and "." segments).
def _refused_char(ch: str) -> bool:
    c = ord(ch)
    return c <= 0x1F or 0x7F <= c <= 0x9F or 0xD800 <= c <= 0xF8FF or 0xFFF0 <= c <= 0xFFFF


def check_path(path: object) -> str:
    """Return `path` if it is a well-formed absolute path; BadInput naming the rule if not."""
    if not isinstance(path, str):
        raise BadInput(f"a store path must be a str, not {type(path).__name__}")
    if not path.startswith("/"):
        raise BadInput(f"store path {path!r} must be absolute (start with '/')")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise BadInput(f"store path {path[:64]!r}... is longer than {MAX_PATH_BYTES} bytes")
    if path == "/":
        return path
    if path.endswith("/"):
        raise BadInput(f"store path {path!r} must not end with '/'")
    for segment in path[1:].split("/"):
        if segment in ("", ".", ".."):
            raise BadInput(
                f"store path {path!r} has an empty, '.' or '..' segment; "
                "segments are non-empty names separated by single '/'"
            )
    bad = next((ch for ch in path if _refused_char(ch)), None)
    if bad is not None:
        raise BadInput(
            f"store path {path!r} contains character U+{ord(bad):04X}, which "
            "ZooKeeper refuses (control characters and U+D800-U+F8FF, U+FFF0-U+FFFF)"
        )
    return path


def check_root(root: object) -> str:
    """Validate a store root (the cluster root): a path other than "/" and /zookeeper."""
    root = check_path(root)
    if root == "/" or root == "/zookeeper" or root.startswith("/zookeeper/"):
        raise BadInput(
            f"store root {root!r} is not allowed: use a dedicated subtree such as "
            "/pegasus/<cluster_name> (ZooKeeper keeps its own nodes in /zookeeper)"
        )
    return root


def check_in_root(root: str, path: object) -> str:
    """Validate `path` and require it to be `root` or below it."""
    path = check_path(path)
    if path != root and not path.startswith(root + "/"):
        raise BadInput(f"store path {path!r} is outside the store's root {root!r}")
    return path


def check_deletable(root: str, path: object) -> str:
    path = check_in_root(root, path)
    if path == root:
        raise BadInput(f"the store's root {root!r} cannot be deleted")
    return path


def check_data(path: str, data: object) -> bytes:
    if not isinstance(data, bytes):
        raise BadInput(f"data for {path!r} must be bytes, not {type(data).__name__}")
    if len(data) > MAX_DATA_BYTES:
        raise BadInput(f"data for {path!r} is {len(data)} bytes; at most {MAX_DATA_BYTES}")
    return data


def op_bytes(op: Op) -> int:
    """What an operation weighs against MAX_COMMIT_BYTES: its path and its data."""
    data = op.data if isinstance(op, Create | Set) else b""
    return len(op.path.encode("utf-8", "surrogatepass")) + len(data)


def check_ops(root: str, ops: object) -> list[Op]:
    """Validate a commit's operations: types, paths inside root, data, and the commit limits."""
    if not isinstance(ops, Sequence) or isinstance(ops, str | bytes):
        raise BadInput("commit takes a list of Create, Set and Delete operations")
    checked: list[Op] = []
    for op in ops:
        if isinstance(op, Delete):
            check_deletable(root, op.path)
        elif isinstance(op, Create | Set):
            check_in_root(root, op.path)
            check_data(op.path, op.data)
        else:
            raise BadInput(f"commit takes Create, Set and Delete operations, not {op!r}")
        checked.append(op)
    if len(checked) > MAX_COMMIT_OPS:
        raise BadInput(f"a commit has {len(checked)} operations; at most {MAX_COMMIT_OPS}")
    total = sum(op_bytes(op) for op in checked)
    if total > MAX_COMMIT_BYTES:
        raise BadInput(
            f"a commit carries {total} bytes of paths and data; at most {MAX_COMMIT_BYTES}"
        )
    return checked


def parent_of(path: str) -> str:
    """The parent of a non-root path ("/a/b" -> "/a", "/a" -> "/")."""
    assert path != "/", "the tree's root has no parent"
    head = path.rsplit("/", 1)[0]
    return head or "/"


def ancestors(path: str) -> list[str]:
    """Proper ancestors of `path` below "/", outermost first ("/a/b/c" -> ["/a", "/a/b"])."""
    parts = path.split("/")[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def join(parent: str, name: str) -> str:
    return parent + name if parent == "/" else f"{parent}/{name}"


def leaf_first(subtree: dict[str, list[str]], top: str) -> list[str]:
    """Order the nodes of a subtree (node -> child names) so every node follows its children."""
    order: list[str] = []
    stack: list[tuple[str, bool]] = [(top, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        stack.append((node, True))
        stack.extend((join(node, name), False) for name in subtree.get(node, ()))
    return order


def chunked(ops: Sequence[Op]) -> Iterator[list[Op]]:
    """Split operations into runs that each fit one commit's limits, keeping their order."""
    chunk: list[Op] = []
    weight = 0
    for op in ops:
        w = op_bytes(op)
        if chunk and (len(chunk) >= MAX_COMMIT_OPS or weight + w > MAX_COMMIT_BYTES):
            yield chunk
            chunk, weight = [], 0
        chunk.append(op)
        weight += w
    if chunk:
        yield chunk
