"""A real Prometheus (Debian's `prometheus` package) scraping test targets, queried over its HTTP API."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from .processes import Component, free_port, http_ok, wait_until


def binary(name: str) -> Path | None:
    """`prometheus` or `promtool` on PATH (make test installs them: hack/monitoring-deps.sh), or None."""
    found = shutil.which(name)
    return Path(found) if found else None


class Prometheus:
    """One Prometheus server with its own data directory, scraping `targets` (job -> host:port) every second."""

    def __init__(self, workdir: Path, targets: dict[str, str], rule_files: tuple[Path, ...] = ()) -> None:
        program = binary("prometheus")
        if program is None:
            raise FileNotFoundError("prometheus not found: run `make monitoring-deps` (Debian's prometheus package)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]} for job, target in targets.items()],
        }
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        argv = [str(program), f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}"]
        self.component = Component("prometheus", argv, workdir / "prometheus.log")

    def start(self, timeout: float = 30.0) -> Prometheus:
        self.component.start()
        wait_until("Prometheus /-/ready", lambda: http_ok(f"{self.url}/-/ready"), timeout, self.component)
        return self

    def stop(self) -> None:
        self.component.stop()

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>: its `data`; raises with Prometheus' error when the status is not success."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector `expr` evaluates to now (raises on a PromQL error)."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", f"{expr} gives a {data['resultType']}, not a vector"
        return data["result"]

    def metric_names(self) -> set[str]:
        """Every metric name scraped so far."""
        return set(self.api("label/__name__/values"))

    def targets_up(self) -> dict[str, str]:
        """job -> health of each active target ("up", "down", "unknown")."""
        return {t["labels"]["job"]: t["health"] for t in self.api("targets")["activeTargets"]}
