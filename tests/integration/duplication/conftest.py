"""One pair of real clusters (bjsrv-account -> tjsrv-account, each a meta server and two
replica servers) shared by the duplication tests of this folder; each test uses tables of
its own and leaves every server running."""

import pytest
from support.dup import two_clusters

from dupkv.client.blocking import BlockingClient


@pytest.fixture(scope="package")
def clusters(tmp_path_factory):
    with two_clusters(tmp_path_factory.mktemp("dup"), replicas=2) as (a, b):
        yield a, b


@pytest.fixture(scope="package")
def clients(clusters):
    a, b = clusters
    ca, cb = BlockingClient(a.meta_address), BlockingClient(b.meta_address)
    yield ca, cb
    ca.close()
    cb.close()
