"""The dashboard against a real Prometheus scraping a fresh proxy over real replicas.

Every series whose label values are known in advance is exported at zero from start-up,
and ratios fall back to 0, so no panel of a freshly started, idle proxy is empty."""

from __future__ import annotations

import urllib.request

import pytest

from tests.prometheus import (
    PrometheusProcess,
    dashboard_targets,
    dashboard_variables,
    is_nan,
    rate_interval,
    substitute,
)

pytestmark = pytest.mark.slow  # real processes under load, several seconds

SCRAPE_INTERVAL = 0.5


@pytest.fixture
def prometheus_over_fresh_proxy(replicas, make_proxy, tmp_path):
    # The PBS estimate is recomputed every pbs_interval, the first time one interval after
    # start-up, from the round trips of the canary's own heartbeats: a short interval has it
    # by the first scrapes.
    proxy = make_proxy(replicas, metrics=True, extra=["--pbs-interval", "1"])
    prom = PrometheusProcess([f"127.0.0.1:{proxy.metrics_port}"], tmp_path / "prometheus",
                             scrape_interval=SCRAPE_INTERVAL)
    try:
        yield proxy, prom
    finally:
        prom.stop()


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return reply.read().decode()


def test_known_series_are_exported_at_zero_from_start_up(replicas, make_proxy):
    proxy = make_proxy(replicas, metrics=True)
    text = scrape(proxy.metrics_port)
    expected = [f'redquorum_quorum_failures_total{{op="{op}"}} 0.0' for op in ("read", "write")]
    for rep in replicas:
        expected += [f'redquorum_read_repairs_total{{reason="{reason}",replica="{rep.id}"}} 0.0'
                     for reason in ("missing", "outdated")]
        expected += [f'redquorum_replica_staleness_seconds_count{{replica="{rep.id}"}} 0.0',
                     f'redquorum_replica_staleness_versions_count{{replica="{rep.id}"}} 0.0',
                     f'redquorum_hints_pending{{replica="{rep.id}"}} 0.0',
                     f'redquorum_hints_replayed_total{{replica="{rep.id}"}} 0.0',
                     f'redquorum_hints_stored_total{{replica="{rep.id}"}} 0.0',
                     f'redquorum_hints_dropped_total{{replica="{rep.id}"}} 0.0',
                     f'redquorum_hint_oldest_age_seconds{{replica="{rep.id}"}} 0.0',
                     f'redquorum_hint_delivery_delay_seconds_count{{replica="{rep.id}"}} 0.0']
    for command in ("get", "set", "del", "mget", "other"):
        expected += [f'redquorum_requests_total{{command="{command}",result="{result}"}} 0.0'
                     for result in ("ok", "error", "noquorum")]
        expected.append(f'redquorum_request_duration_seconds_count{{command="{command}"}} 0.0')
    lines = set(text.splitlines())
    missing = [line for line in expected if line not in lines]
    assert not missing, f"not exported at zero: {missing}"


def test_no_dashboard_panel_is_empty_on_a_fresh_proxy(prometheus_over_fresh_proxy):
    proxy, prom = prometheus_over_fresh_proxy
    prom.wait_for_scrapes(6)
    variables = dashboard_variables(prom)
    assert variables["instance"] and variables["replica"].count("|") == 2, variables
    interval = rate_interval(SCRAPE_INTERVAL)
    empty, nan = [], []
    targets = list(dashboard_targets())
    assert len(targets) > 20
    for title, ref, expr in targets:
        query = substitute(expr, variables, interval)
        result = prom.query(query)
        if not result:
            empty.append(f"{title} ({ref}): {query}")
        elif " / " in query and any(is_nan(r["value"][1]) for r in result):
            # a ratio over zero traffic without its fallback (a quantile of no observations
            # is NaN too, and Grafana rightly leaves a gap for it)
            nan.append(f"{title} ({ref}): {query}")
    assert not empty, "empty panel queries:\n" + "\n".join(empty)
    assert not nan, "NaN panel queries:\n" + "\n".join(nan)
