"""deploy/prometheus/alerts.yml and deploy/grafana/mcpbot.json: the rules pass promtool (where it is installed),
and every PromQL expression in them names only metrics the bot exports (host.metrics.REGISTRY), so no alert or
panel silently watches nothing."""

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from host import metrics
from tests.conftest import ROOT

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "mcpbot.json"

_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "gauge": ("",),
    "info": ("_info",),
}
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
_FUNCTION_OR_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def exported() -> set[str]:
    """Every series name the bot's registry can expose, also for label sets not seen yet."""
    names = set()
    for family in metrics.REGISTRY.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions, keywords, label names
    (inside `{}` or a `by (...)` clause), strings, durations or Grafana variables."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\$\w+", "", text)
    names = set()
    for match in _FUNCTION_OR_NAME.finditer(text):
        rest = text[match.end() :].lstrip()
        word = match.group()
        if rest.startswith("(") or word in _KEYWORDS or re.fullmatch(r"[0-9.e]+", word):
            continue
        if match.start() > 0 and (text[match.start() - 1].isdigit() or text[match.start() - 1] == "."):
            continue  # the exponent or unit of a number (1e-9, 5m)
        names.add(word)
    return names


def test_metric_names_are_read_out_of_promql() -> None:
    expr = 'histogram_quantile(0.95, sum by (le, model) (rate(x_bucket{status="ok", a=~"b|c"}[5m]))) > 1e-9 or y'
    assert metric_names(expr) == {"x_bucket", "y"}


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expr) of every query in the dashboard."""
    found: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            found.extend((panel["title"], target["expr"]) for target in panel.get("targets", []))
            walk(panel.get("panels", []))

    walk(json.loads(DASHBOARD.read_text())["panels"])
    return found


def test_the_alerts_cover_errors_a_slow_model_a_lost_database_and_servers_down() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert set(rules) == {"McpbotHighErrorRate", "McpbotSlowLLM", "McpbotDatabaseLost", "McpbotMcpServerDown"}
    assert "bot_database_up" in rules["McpbotDatabaseLost"]["expr"]
    assert "mcp_server_up" in rules["McpbotMcpServerDown"]["expr"]
    for rule in rules.values():
        assert rule["for"] and rule["labels"]["severity"] in {"warning", "critical"} and rule["annotations"]["summary"]


def test_every_alert_and_panel_names_only_metrics_the_bot_exports() -> None:
    names = exported()
    queries = [(rule["alert"], rule["expr"]) for rule in alert_rules()] + dashboard_exprs()
    assert len(queries) > 20
    unknown = {(where, name) for where, expr in queries for name in metric_names(expr) if name not in names}
    assert not unknown, f"not exported by the bot: {sorted(unknown)}"


def test_the_dashboard_has_the_panels_operators_look_for() -> None:
    titles = {title for title, _expr in dashboard_exprs()}
    for wanted in ("Messages per minute", "Active users and sessions", "LLM latency p50 / p95 / p99", "Error rate"):
        assert wanted in titles
    assert {"Tool calls per minute", "Memory", "CPU", "Database", "Cache (Redis rate limits)"} <= titles
    latency = " ".join(expr for title, expr in dashboard_exprs() if title == "LLM latency p50 / p95 / p99")
    assert re.findall(r"histogram_quantile\(([0-9.]+)", latency) == ["0.5", "0.95", "0.99"]


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian's `prometheus` package provides it)")
    done = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 rules found" in done.stdout


PROMTOOL_TESTS: dict[str, Any] = {
    "rule_files": [str(ALERTS)],
    "evaluation_interval": "1m",
    "tests": [
        {
            "interval": "1m",
            "input_series": [
                # 20 messages a minute, 5 of them failing; then the database stops answering at minute 10
                {"series": 'bot_messages_total{status="answered",user_type="user"}', "values": "0+15x30"},
                {"series": 'bot_messages_total{status="failed",user_type="user"}', "values": "0+5x30"},
                {"series": "bot_database_up", "values": "1x10 0x20"},
                {"series": "bot_storage_errors_total", "values": "0x30"},
                {"series": 'mcp_server_up{mcp_name="files"}', "values": "1x5 0x25"},
                {"series": 'mcp_server_up{mcp_name="time"}', "values": "1x30"},
                {
                    "series": 'llm_request_duration_seconds_bucket{model="m",status="ok",le="30"}',
                    "values": "0+1x30",
                },
                {
                    "series": 'llm_request_duration_seconds_bucket{model="m",status="ok",le="60"}',
                    "values": "0+10x30",
                },
                {
                    "series": 'llm_request_duration_seconds_bucket{model="m",status="ok",le="+Inf"}',
                    "values": "0+10x30",
                },
            ],
            "alert_rule_test": [
                {"eval_time": "3m", "alertname": "McpbotHighErrorRate", "exp_alerts": []},  # not for 5m yet
                {
                    "eval_time": "20m",
                    "alertname": "McpbotHighErrorRate",
                    "exp_alerts": [{"exp_labels": {"severity": "critical"}}],
                },
                {"eval_time": "11m", "alertname": "McpbotDatabaseLost", "exp_alerts": []},
                {
                    "eval_time": "15m",
                    "alertname": "McpbotDatabaseLost",
                    "exp_alerts": [{"exp_labels": {"severity": "critical"}}],
                },
                {
                    "eval_time": "15m",
                    "alertname": "McpbotMcpServerDown",
                    "exp_alerts": [{"exp_labels": {"severity": "warning", "mcp_name": "files"}}],
                },
                {
                    "eval_time": "25m",
                    "alertname": "McpbotSlowLLM",
                    "exp_alerts": [{"exp_labels": {"severity": "warning", "model": "m"}}],
                },
            ],
        }
    ],
}


def test_the_alerts_fire_when_what_they_watch_goes_wrong(tmp_path: Path) -> None:
    """promtool's rule unit tests: a quarter of messages failing, the database gauge at 0, one server of two down
    and a model whose answers mostly take over 30 s each fire their alert, only after its `for`."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian's `prometheus` package provides it)")
    annotations = {rule["alert"]: rule["annotations"] for rule in alert_rules()}
    filled = {"$labels.mcp_name": "files", "$labels.model": "m", "$value | humanizePercentage": "25%"}
    filled["$value | humanizeDuration"] = "58.33s"  # p95 of 10 answers, 1 within 30 s and 9 within 60 s

    def expected(alert: str) -> dict[str, str]:
        return {
            key: re.sub(r"\{\{ (.*?) \}\}", lambda template: filled[template.group(1)], text)
            for key, text in annotations[alert].items()
        }

    spec = copy.deepcopy(PROMTOOL_TESTS)
    for case in spec["tests"][0]["alert_rule_test"]:
        for alert in case["exp_alerts"]:
            alert["exp_annotations"] = expected(case["alertname"])
    tests = tmp_path / "alerts_test.yml"
    tests.write_text(yaml.safe_dump(spec))
    done = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
