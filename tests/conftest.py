"""Fixtures shared by the whole test suite.

`zookeeper`: one real ZooKeeper (Debian package, standalone, 127.0.0.1, free port) for the
session; tests isolate themselves by using their own subtree. It fails, never skips, when
ZooKeeper cannot start.
"""

from collections.abc import Iterator

import pytest
from support.zookeeper import ZkServer, start_zookeeper


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZkServer]:
    server = start_zookeeper(tmp_path_factory.mktemp("zookeeper"))
    try:
        yield server
    finally:
        server.stop()
