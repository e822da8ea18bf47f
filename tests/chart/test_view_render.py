"""The chart's view API wiring rendered offline: view.enabled sets up the operator's container for it.

With ``view.enabled`` the operator container gets exactly the view settings, a read-only mount of the
serving certificate's Secret and a ``view`` port, which the view Service targets; with it off (the
default) none of that is rendered.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.helm import Helm, Manifest, by_kind, one
from tests.chart.test_render import EXTERNAL_DB, FULLNAME, HA, NAMESPACED, env_of, operator_container

VIEW_TLS_SECRET = f"{FULLNAME}-view-tls"
VIEW_TLS_DIR = "/var/run/stratarouter/view-tls"
VIEW_ENV = {
    "STRATA_VIEW_ENABLED": "true",
    "STRATA_VIEW_PORT": "8443",
    "STRATA_VIEW_TLS_CERT_FILE": f"{VIEW_TLS_DIR}/tls.crt",
    "STRATA_VIEW_TLS_KEY_FILE": f"{VIEW_TLS_DIR}/tls.key",
}
VIEW_ON = {"view": {"enabled": True}}


def _pod_spec(manifests: list[Manifest]) -> dict[str, Any]:
    spec: dict[str, Any] = one(manifests, "Deployment", FULLNAME)["spec"]["template"]["spec"]
    return spec


def _view_env(manifests: list[Manifest]) -> dict[str, Any]:
    return {name: value for name, value in env_of(manifests).items() if name.startswith("STRATA_VIEW_")}


@pytest.mark.parametrize(
    "values", [{}, NAMESPACED, HA, EXTERNAL_DB], ids=["defaults", "namespaced", "ha", "db"]
)
def test_the_view_wiring_is_there_exactly_when_enabled(helm: Helm, values: dict[str, Any]) -> None:
    off = helm.template(values)
    on = helm.template({**values, **VIEW_ON})
    container = operator_container(on)
    assert _view_env(on) == VIEW_ENV
    assert [p for p in container["ports"] if p["name"] == "view"] == [
        {"name": "view", "containerPort": 8443, "protocol": "TCP"}
    ]
    assert [m for m in container["volumeMounts"] if m["name"] == "view-tls"] == [
        {"name": "view-tls", "mountPath": VIEW_TLS_DIR, "readOnly": True}
    ]
    assert [v for v in _pod_spec(on)["volumes"] if v["name"] == "view-tls"] == [
        {"name": "view-tls", "secret": {"secretName": VIEW_TLS_SECRET, "defaultMode": 0o440}}
    ]
    # The mounted Secret holds the two files the env names.
    secret = one(on, "Secret", VIEW_TLS_SECRET)
    assert {"tls.crt", "tls.key"} <= set(secret["data"])
    # Off: none of it, and the rest of the container is what view.enabled=true adds to, unchanged.
    assert _view_env(off) == {}
    off_container = operator_container(off)
    assert [p["name"] for p in off_container["ports"]] == ["http"]
    assert [m["name"] for m in off_container["volumeMounts"]] == ["tmp"]
    assert [v["name"] for v in _pod_spec(off)["volumes"]] == ["tmp"]
    assert not [s for s in by_kind(off, "Secret") if s["metadata"]["name"] == VIEW_TLS_SECRET]
    trimmed = {**container}
    trimmed["env"] = [e for e in container["env"] if e["name"] not in VIEW_ENV]
    trimmed["ports"] = [p for p in container["ports"] if p["name"] != "view"]
    trimmed["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] != "view-tls"]
    assert trimmed == off_container


def test_the_view_port_setting_moves_the_container_port_and_the_service_target(helm: Helm) -> None:
    for port in (8443, 9443):
        manifests = helm.template({"view": {"enabled": True, "port": port}})
        assert _view_env(manifests)["STRATA_VIEW_PORT"] == str(port)
        ports = {p["name"]: p["containerPort"] for p in operator_container(manifests)["ports"]}
        assert ports["view"] == port
        service = one(manifests, "Service", f"{FULLNAME}-view")
        assert service["spec"]["ports"] == [
            {"name": "view", "port": 443, "targetPort": port, "protocol": "TCP"}
        ]
        # The Service selects the operator's pods, whose template carries the selector's labels.
        labels = one(manifests, "Deployment", FULLNAME)["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        apiservice = one(manifests, "APIService", "v1alpha1.view.stratarouter.io")
        assert apiservice["spec"]["service"] == {
            "namespace": "strata-system",
            "name": f"{FULLNAME}-view",
            "port": 443,
        }


def test_a_network_policy_admits_the_api_server_to_the_view_port_only_when_enabled(helm: Helm) -> None:
    off = one(helm.template({"networkPolicy": {"enabled": True}}), "NetworkPolicy", FULLNAME)
    assert [rule["ports"] for rule in off["spec"]["ingress"]] == [[{"port": "http", "protocol": "TCP"}]]
    on = one(helm.template({"networkPolicy": {"enabled": True}, **VIEW_ON}), "NetworkPolicy", FULLNAME)
    assert on["spec"]["ingress"][0] == off["spec"]["ingress"][0]
    # The API server is no pod: the view port's rule names no source (anyone may connect; the view API
    # believes only the API server's front-proxy certificate).
    assert on["spec"]["ingress"][1:] == [{"ports": [{"port": "view", "protocol": "TCP"}]}]


def test_view_enabled_lints_strict(helm: Helm) -> None:
    helm.lint(VIEW_ON)
    helm.lint({**VIEW_ON, "networkPolicy": {"enabled": True}, "replicas": 2})
