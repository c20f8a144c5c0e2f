from __future__ import annotations

import pytest

from tests.harness import ProxyProcess, start_replicas


@pytest.fixture
def replicas(tmp_path):
    reps = start_replicas(3, tmp_path / "replicas")
    yield reps
    reps.stop()


@pytest.fixture
def make_proxy(tmp_path):
    started: list[ProxyProcess] = []

    def make(replica_list, **kwargs) -> ProxyProcess:
        kwargs.setdefault("log_path", tmp_path / f"proxy{len(started)}.log")
        proxy = ProxyProcess(list(replica_list), **kwargs)
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


@pytest.fixture
def proxy(replicas, make_proxy):
    return make_proxy(replicas)


@pytest.fixture
def client(proxy):
    c = proxy.client()
    yield c
    c.close()
