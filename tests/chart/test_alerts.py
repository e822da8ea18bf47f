"""The chart's alerts and dashboard: the PrometheusRule as helm renders it passes ``promtool check rules``
and the unit tests in tests/chart/alerts/ (each alert fires on synthetic series, and stays quiet below its
threshold); thresholds come from values; the dashboard ConfigMap carries the sidecar's label and asks
only for metrics the operator exports.

promtool comes from ``$STRATA_PROMTOOL`` if set, else ``$STRATA_TOOLS_BIN/promtool``, else the tools cache
that ``hack/build-tools.sh`` fills.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from stratarouter_runtime.operator import metrics
from tests.chart.helm import Helm, HelmError, Manifest, by_kind, one

ALERTS_TEST = Path(__file__).resolve().parent / "alerts" / "alerts_test.yaml"
ALERTS = {
    "StrataRouterStoreSizeHigh",
    "StrataRouterRecoveryStorm",
    "StrataRouterExecutionBackoffLimitExceeded",
    "StrataRouterCheckpointLatencyHigh",
    "StrataRouterStoreUnreachable",
}
ON = {"prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}}
METRIC = re.compile(r"\bstratarouter_[a-z0-9_]+")


@pytest.fixture(scope="session")
def promtool() -> Path:
    explicit = os.environ.get("STRATA_PROMTOOL", "").strip()
    if explicit:
        path = Path(explicit)
    else:
        from stratarouter_dev.tools import tools_bin_dir

        bin_dir = os.environ.get("STRATA_TOOLS_BIN", "").strip()
        path = (Path(bin_dir) if bin_dir else tools_bin_dir()) / "promtool"
    if not os.access(path, os.X_OK):
        pytest.fail(f"no promtool at {path}; run hack/build-tools.sh or set STRATA_PROMTOOL")
    return path


def run(promtool: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def rule_groups(manifests: list[Manifest]) -> dict[str, Any]:
    """The PrometheusRule's spec, which is a Prometheus rule file (``groups:``) as it stands."""
    spec: dict[str, Any] = one(manifests, "PrometheusRule")["spec"]
    return spec


def write_rules(directory: Path, groups: dict[str, Any]) -> Path:
    """The rule file promtool reads, next to a copy of the unit tests that name it (rules.yaml)."""
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(groups, sort_keys=False))
    shutil.copy(ALERTS_TEST, directory / ALERTS_TEST.name)
    return path


def alerts_of(groups: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in groups["groups"] for rule in group["rules"] if "alert" in rule}


def test_monitoring_objects_are_off_by_default(helm: Helm) -> None:
    manifests = helm.template()
    assert not by_kind(manifests, "PrometheusRule")
    assert not [m for m in by_kind(manifests, "ConfigMap") if m["metadata"]["name"].endswith("-dashboard")]


def test_rendered_rules_pass_promtool_check_and_unit_tests(
    helm: Helm, promtool: Path, tmp_path: Path
) -> None:
    groups = rule_groups(helm.template(ON))
    assert set(alerts_of(groups)) == ALERTS
    rules = write_rules(tmp_path, groups)

    checked = run(promtool, "check", "rules", str(rules), cwd=tmp_path)
    print(f"$ promtool check rules rules.yaml\n{checked.stdout}{checked.stderr}")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout

    tested = run(promtool, "test", "rules", ALERTS_TEST.name, cwd=tmp_path)
    print(f"$ promtool test rules {ALERTS_TEST.name}\n{tested.stdout}{tested.stderr}")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    """Each alert has a case where it fires and one where it must not (exp_alerts empty)."""
    tests = yaml.safe_load(ALERTS_TEST.read_text())
    assert tests["rule_files"] == ["rules.yaml"]
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test") or []:
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert fired == ALERTS
    assert quiet == ALERTS


def test_the_unit_tests_fail_when_a_threshold_no_longer_matches(
    helm: Helm, promtool: Path, tmp_path: Path
) -> None:
    """The unit tests test the rendered rules: a store threshold above the synthetic sizes fails them."""
    values = {"prometheusRule": {"enabled": True, "storeSize": {"thresholdBytes": 10**12}}}
    write_rules(tmp_path, rule_groups(helm.template(values)))
    tested = run(promtool, "test", "rules", ALERTS_TEST.name, cwd=tmp_path)
    assert tested.returncode != 0, tested.stdout
    assert "StrataRouterStoreSizeHigh" in tested.stdout + tested.stderr


def test_promtool_check_refuses_a_broken_rule(promtool: Path, tmp_path: Path) -> None:
    broken = {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "sum by (job (x)"}]}]}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    assert run(promtool, "check", "rules", str(path), cwd=tmp_path).returncode != 0


def test_thresholds_windows_and_severities_come_from_values(
    helm: Helm, promtool: Path, tmp_path: Path
) -> None:
    values = {
        "prometheusRule": {
            "enabled": True,
            "labels": {"release": "prom"},
            "selector": 'namespace="ml",service="ops"',
            "storeSize": {"thresholdBytes": 5 * 1024**3, "for": "30m", "severity": "critical"},
            "recoveryStorm": {"recoveries": 7, "window": "30m"},
            "backoffLimitExceeded": {"window": "1h"},
            "checkpointLatency": {"p99Seconds": 0.25, "window": "10m", "for": "20m"},
            "storeUnreachable": {"for": "5m", "severity": "page"},
        }
    }
    manifests = helm.template(values)
    assert one(manifests, "PrometheusRule")["metadata"]["labels"]["release"] == "prom"
    groups = rule_groups(manifests)
    alerts = alerts_of(groups)
    store = alerts["StrataRouterStoreSizeHigh"]
    assert store["expr"].endswith(f"> {5 * 1024**3}")
    assert (store["for"], store["labels"]["severity"]) == ("30m", "critical")
    assert "[30m])) > 7" in alerts["StrataRouterRecoveryStorm"]["expr"]
    backoff = alerts["StrataRouterExecutionBackoffLimitExceeded"]["expr"]
    assert 'namespace="ml",service="ops",phase="Failed",reason="BackoffLimitExceeded"}[1h]' in backoff
    latency = alerts["StrataRouterCheckpointLatencyHigh"]
    assert latency["expr"].endswith("[10m]))) > 0.25")
    assert latency["for"] == "20m"
    unreachable = alerts["StrataRouterStoreUnreachable"]
    assert unreachable["expr"] == 'stratarouter_store_up{namespace="ml",service="ops"} == 0'
    assert (unreachable["for"], unreachable["labels"]["severity"]) == ("5m", "page")
    for rule in alerts.values():
        assert 'namespace="ml",service="ops"' in rule["expr"]
    checked = run(promtool, "check", "rules", str(write_rules(tmp_path, groups)), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_default_selector_is_what_the_service_monitor_scrapes(helm: Helm) -> None:
    manifests = helm.template({**ON, "serviceMonitor": {"enabled": True}}, namespace="ops")
    service = one(manifests, "Service", "strata-stratarouter-operator")
    monitor = one(manifests, "ServiceMonitor")
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == ["ops"]
    # Prometheus Operator names a ServiceMonitor target's job after its Service.
    selector = f'namespace="ops",job="{service["metadata"]["name"]}"'
    for rule in alerts_of(rule_groups(manifests)).values():
        assert selector in rule["expr"], rule["expr"]


BAD_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "window in words": ({"prometheusRule": {"recoveryStorm": {"window": "ten minutes"}}}, "window"),
    "threshold with a unit": (
        {"prometheusRule": {"storeSize": {"thresholdBytes": "10GB"}}},
        "thresholdBytes",
    ),
    "zero latency threshold": ({"prometheusRule": {"checkpointLatency": {"p99Seconds": 0}}}, "p99Seconds"),
    "misspelt dashboard key": ({"grafanaDashboard": {"enable": True}}, "enable"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_monitoring_values_are_refused(helm: Helm, case: str) -> None:
    values, key = BAD_VALUES[case]
    with pytest.raises(HelmError) as caught:
        helm.template(values)
    assert "values don't meet the specifications of the schema" in caught.value.stderr
    assert key in caught.value.stderr, caught.value.stderr


SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}


def exported_metrics() -> set[str]:
    """Every series name the operator's registry exports, labelled families without children included."""
    return {family.name + suffix for family in metrics.REGISTRY.collect() for suffix in SUFFIXES[family.type]}


def test_dashboard_configmap_for_the_grafana_sidecar(helm: Helm) -> None:
    manifests = helm.template(ON)
    configmap = one(manifests, "ConfigMap", "strata-stratarouter-operator-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == "strata-system"
    dashboard = json.loads(configmap["data"]["stratarouter-operator.json"])
    assert dashboard["uid"] == "stratarouter-operator"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert used <= exported_metrics(), used - exported_metrics()
    # a panel for each alert's metric
    alerted = {
        name for rule in alerts_of(rule_groups(manifests)).values() for name in METRIC.findall(rule["expr"])
    }
    assert alerted <= used, alerted - used

    elsewhere = helm.template(
        {"grafanaDashboard": {"enabled": True, "namespace": "monitoring", "labels": {"dash": "yes"}}}
    )
    moved = one(elsewhere, "ConfigMap", "strata-stratarouter-operator-dashboard")
    assert moved["metadata"]["namespace"] == "monitoring"
    assert moved["metadata"]["labels"]["dash"] == "yes"


def test_the_rules_ask_only_for_metrics_the_operator_exports(helm: Helm) -> None:
    used = {
        name
        for rule in alerts_of(rule_groups(helm.template(ON))).values()
        for name in METRIC.findall(rule["expr"])
    }
    assert used <= exported_metrics(), used - exported_metrics()
    assert "stratarouter_store_bytes" in used


def test_helm_lint_strict_with_monitoring_on(helm: Helm) -> None:
    out = helm.lint({**ON, "serviceMonitor": {"enabled": True}})
    assert "1 chart(s) linted, 0 chart(s) failed" in out
    assert "[WARNING]" not in out, out
    assert "[ERROR]" not in out, out
