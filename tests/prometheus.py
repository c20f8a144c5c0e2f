"""A real Prometheus server (Debian package ``prometheus``) on a free loopback port, scraping
given targets, and its HTTP query API. Used by the dashboard tests and by
monitoring/render_dashboard.py. Stopped by PID like every process the tests start."""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from redquorum.replicas.launcher import free_port

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "monitoring" / "grafana" / "dashboards" / "redquorum.json"
PROMETHEUS = shutil.which("prometheus")


class PrometheusError(RuntimeError):
    pass


class PrometheusProcess:
    def __init__(self, targets: list[str], data_dir: Path, *, scrape_interval: float = 1.0) -> None:
        if PROMETHEUS is None:
            raise PrometheusError("prometheus is not installed (scripts/bootstrap.sh installs it)")
        self.scrape_interval = scrape_interval
        self.port = free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        config = data_dir / "prometheus.yml"
        interval = f"{int(scrape_interval * 1000)}ms"
        config.write_text(json.dumps({  # JSON is YAML
            "global": {"scrape_interval": interval, "scrape_timeout": interval,
                       "evaluation_interval": interval},
            "scrape_configs": [{"job_name": "redquorum", "static_configs": [{"targets": targets}]}],
        }))
        self.log_path = data_dir / "prometheus.log"
        self.args = [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={data_dir / 'tsdb'}",
                     f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=data_dir)
        try:
            self._wait_ready(timeout=30)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrometheusError(f"prometheus exited with {self.process.returncode}: "
                                      f"{self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise PrometheusError(f"prometheus not ready after {timeout}s")

    def api(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode({k: str(v) for k, v in params.items()})
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as reply:
                body = json.load(reply)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        data = self.api("query", **params)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        return self.api("query_range", query=expr, start=start, end=end, step=step)["result"]

    def wait_for_scrapes(self, count: int, timeout: float = 60.0) -> None:
        """Until every target has been scraped successfully ``count`` times."""
        window = f"{int(self.scrape_interval * (count + 10) * 1000)}ms"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.query(f"min(sum_over_time(up[{window}]))")
            if found and float(found[0]["value"][1]) >= count:
                return
            time.sleep(self.scrape_interval / 2)
        raise PrometheusError(f"fewer than {count} successful scrapes after {timeout}s")

    def label_values(self, metric: str, label: str) -> list[str]:
        return self.api(f"label/{label}/values", **{"match[]": metric})

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# -- the dashboard's queries --------------------------------------------------------------

def dashboard_targets(path: Path = DASHBOARD) -> Iterator[tuple[str, str, str]]:
    """(panel title, refId, expr) of every panel query, rows' nested panels included."""
    def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels") or [])

    board = json.loads(path.read_text())
    for panel in walk(board.get("panels", [])):
        for target in panel.get("targets") or []:
            if "expr" in target:
                yield panel["title"], target.get("refId", ""), target["expr"]


def substitute(expr: str, variables: dict[str, str], rate_interval: str) -> str:
    """Grafana's interval macros and template variables, as Grafana would fill them in."""
    expr = re.sub(r"\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}",
                  rate_interval, expr)
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables[m.group(1)], expr)


def rate_interval(scrape_interval: float) -> str:
    """Grafana's $__rate_interval at the finest resolution: four scrape intervals."""
    return f"{int(scrape_interval * 4 * 1000)}ms"


def is_nan(value: str) -> bool:
    return math.isnan(float(value))


def dashboard_variables(prom: PrometheusProcess, path: Path = DASHBOARD) -> dict[str, str]:
    """Each template variable resolved through Prometheus, in order, as the regex of all
    its values (what Grafana substitutes when every value is selected)."""
    board = json.loads(path.read_text())
    values: dict[str, str] = {}
    for var in board.get("templating", {}).get("list", []):
        query = var.get("query")
        query = query.get("query", "") if isinstance(query, dict) else query or ""
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", query)
        if not m:
            raise PrometheusError(f"variable ${var['name']}: only label_values() queries are resolved")
        found = prom.label_values(substitute(m.group(1), values, "1m"), m.group(2))
        values[var["name"]] = "|".join(re.escape(v).replace("\\", "\\\\") for v in found)
    return values
