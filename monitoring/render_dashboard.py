"""Render the dashboard's main panels to a PNG from a real Prometheus, over a failure it
drives itself.

    REDQUORUM_MONITORING=1 bash scripts/bootstrap.sh      # matplotlib (the [monitoring] extra)
    .venv/bin/python monitoring/render_dashboard.py [--out docs/dashboard.png]

It starts three redis-server replicas, a proxy with --metrics-listen and a Prometheus
scraping it every second, all on free loopback ports, and runs a light load (SET and GET
over a few hundred keys). Then: healthy, SIGKILL replica r3, restart it with an empty data
directory, and let hinted handoff and read repair bring it back. The panels are the
dashboard's own queries (monitoring/grafana/dashboards/redquorum.json, template variables
set to every value), read through Prometheus's query_range API, plus the request latency
p50/p99 over all commands. About two and a half minutes.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import redis  # noqa: E402

from tests.harness import ProxyProcess, start_replicas, wait_for  # noqa: E402
from tests.prometheus import (  # noqa: E402
    PrometheusProcess,
    dashboard_targets,
    dashboard_variables,
    rate_interval,
    substitute,
)

SCRAPE_INTERVAL = 1.0
PHASES = (("healthy", 35.0), ("r3 killed", 40.0), ("r3 back, empty", 65.0))
KEYS = 300


@dataclass
class Panel:
    title: str
    unit: str
    queries: list[tuple[str, str]]  # (PromQL, legend format)


def dashboard_query(title: str, ref: str = "A") -> str:
    for panel_title, panel_ref, expr in dashboard_targets():
        if panel_title == title and panel_ref == ref:
            return expr
    raise KeyError(f"no panel {title!r} ({ref}) in the dashboard")


def panels() -> list[Panel]:
    latency = ("histogram_quantile({q}, sum by (le) (rate(redquorum_request_duration_seconds_bucket"
               "{{instance=~\"$instance\"}}[$__rate_interval])))")
    return [
        Panel("Replica lag (freshness canary)", "s",
              [(dashboard_query("Replica lag (freshness canary)"), "{replica}")]),
        Panel("Stale reads /s", "reads/s", [(dashboard_query("Stale reads /s"), "stale reads/s")]),
        Panel("Read repairs /s by replica and reason", "repairs/s",
              [(dashboard_query("Read repairs /s by replica and reason"), "{replica} {reason}")]),
        Panel("Hinted handoff: hints pending", "hints",
              [(dashboard_query("Hinted handoff: hints pending"), "{replica}")]),
        Panel("Request latency (all commands)", "ms",
              [(latency.format(q=0.5), "p50"), (latency.format(q=0.99), "p99")]),
    ]


class Load(threading.Thread):
    """About 100 commands a second, half SET half GET, over KEYS keys."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        self.stopping = threading.Event()
        self.errors = 0

    def run(self) -> None:
        rng = random.Random(7)
        while not self.stopping.is_set():
            key = f"user:{rng.randrange(KEYS)}"
            try:
                if rng.random() < 0.5:
                    self.client.set(key, rng.randbytes(32))
                else:
                    self.client.get(key)
            except redis.RedisError:
                self.errors += 1
            time.sleep(0.01)


def run_scenario(work: Path) -> tuple[PrometheusProcess, float, float, list[tuple[float, str]], list]:
    replicas = start_replicas(3, work / "replicas")
    proxy = prom = None
    try:
        proxy = ProxyProcess(replicas, metrics=True, log_path=work / "proxy.log")
        prom = PrometheusProcess([f"127.0.0.1:{proxy.metrics_port}"], work / "prometheus",
                                 scrape_interval=SCRAPE_INTERVAL)
        prom.wait_for_scrapes(3)
        load = Load(proxy.port)
        load.start()
        start = time.time()
        events = []
        victim = replicas.by_id("r3")
        for name, seconds in PHASES:
            if name == "r3 killed":
                victim.kill()
            elif name == "r3 back, empty":
                shutil.rmtree(victim.dir)
                victim.start()
                wait_for(victim.ready, timeout=15, what="r3 to restart")
            events.append((time.time(), name))
            print(f"{time.strftime('%H:%M:%S')} {name}, {seconds:.0f}s", flush=True)
            time.sleep(seconds)
        load.stopping.set()
        load.join()
        end = time.time()
        print(f"load: {load.errors} commands failed", flush=True)
        return prom, start, end, events, [proxy, replicas]
    except BaseException:
        if prom is not None:
            prom.stop()
        if proxy is not None:
            proxy.stop()
        replicas.stop()
        raise


def legend(template: str, labels: dict[str, str]) -> str:
    return template.format_map({k: labels.get(k, "") for k in ("replica", "reason", "command")}).strip()


def render(prom: PrometheusProcess, start: float, end: float, events: list[tuple[float, str]],
           out: Path) -> None:
    variables = dashboard_variables(prom)
    interval = rate_interval(SCRAPE_INTERVAL * 2)  # smoother than Grafana's finest resolution
    chosen = panels()
    fig, axes = plt.subplots(len(chosen), 1, figsize=(11, 2.6 * len(chosen)), sharex=True)
    for ax, panel in zip(axes, chosen, strict=True):
        for expr, template in panel.queries:
            query = substitute(expr, variables, interval)
            for series in prom.query_range(query, start, end, SCRAPE_INTERVAL):
                xs = [float(t) - start for t, _ in series["values"]]
                ys = [float(v) * (1000 if panel.unit == "ms" else 1) for _, v in series["values"]]
                ax.plot(xs, ys, label=legend(template, series["metric"]), linewidth=1.4)
        for at, _ in events[1:]:
            ax.axvline(at - start, color="grey", linestyle="--", linewidth=0.8)
        ax.set_title(panel.title, loc="left", fontsize=10)
        ax.set_ylabel(panel.unit)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=7, ncol=3)
    for at, name in events[1:]:
        axes[0].annotate(name, (at - start, 1.0), xycoords=("data", "axes fraction"),
                         xytext=(3, -10), textcoords="offset points", fontsize=8, color="dimgrey",
                         bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    axes[-1].set_xlabel("seconds since the load started")
    fig.suptitle("redquorum: replica r3 killed, then restarted empty (n=3, w=2, r=2; ~100 commands/s)",
                 fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    print(f"wrote {out}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="redquorum-render-") as temp:
        prom, start, end, events, processes = run_scenario(Path(temp))
        proxy, replicas = processes
        try:
            render(prom, start, end, events, args.out)
        finally:
            prom.stop()
            proxy.stop()
            replicas.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
