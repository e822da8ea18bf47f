"""The chart rendered offline (``helm template``) with several value sets, asserted object by object."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from stratarouter_dev import images
from tests.chart.helm import CHART, Helm, Manifest, by_kind, one, rules_of, values_file

REPO = CHART.parents[1]
FULLNAME = "strata-stratarouter-operator"
NAMESPACED = {"watchNamespaces": ["team-a", "team-b"]}
HA = {"replicas": 3}
EXTERNAL_DB = {
    "postgresql": {"enabled": False},
    "database": {"existingSecret": "prod-db", "existingSecretKey": "dsn"},
}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": NAMESPACED,
    "ha": HA,
    "ha-namespaced": {**HA, **NAMESPACED},
    "external-db": EXTERNAL_DB,
    "everything-on": {
        **HA,
        "serviceMonitor": {"enabled": True},
        "networkPolicy": {"enabled": True},
        "postgresql": {"persistence": {"enabled": False}},
    },
}


def operator_container(manifests: list[Manifest]) -> dict[str, Any]:
    deployment = one(manifests, "Deployment", FULLNAME)
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    container: dict[str, Any] = containers[0]
    return container


def env_of(manifests: list[Manifest]) -> dict[str, Any]:
    """The operator container's env as name -> value (or valueFrom)."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in operator_container(manifests)["env"]}


def stratarouter_crds(manifests: list[Manifest]) -> list[Manifest]:
    return [
        m for m in by_kind(manifests, "CustomResourceDefinition") if m["spec"]["group"] == "stratarouter.io"
    ]


@pytest.fixture(scope="module", params=sorted(VALUE_SETS))
def rendered(request: pytest.FixtureRequest, helm: Helm) -> list[Manifest]:
    return helm.template(VALUE_SETS[request.param])


# -- hardening ----------------------------------------------------------------------------------------


def test_every_container_is_hardened(rendered: list[Manifest]) -> None:
    for workload in by_kind(rendered, "Deployment") + by_kind(rendered, "StatefulSet"):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod.get("initContainers", []) + pod["containers"]:
            sc = container["securityContext"]
            where = f"{workload['kind']}/{workload['metadata']['name']}:{container['name']}"
            assert sc["runAsNonRoot"] is True, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert "privileged" not in sc, where
            assert container["resources"]["requests"], where
            assert container["resources"]["limits"]["memory"], where


def test_probes_hit_healthz_on_the_api_port(rendered: list[Manifest]) -> None:
    container = operator_container(rendered)
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}


# -- RBAC ------------------------------------------------------------------------------------------------


def test_no_wildcard_in_any_rbac_rule(rendered: list[Manifest]) -> None:
    rules = list(rules_of(rendered))
    assert rules
    for role, rule in rules:
        for key in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert not any("*" in item for item in rule.get(key, [])), (role["metadata"]["name"], rule)


def test_status_and_finalizers_subresources_have_their_own_rules(rendered: list[Manifest]) -> None:
    for _, rule in rules_of(rendered):
        subresources = {r for r in rule["resources"] if "/" in r}
        assert not subresources or subresources == set(rule["resources"]), rule
    status_rules = [rule for _, rule in rules_of(rendered) if "executions/status" in rule["resources"]]
    assert [rule["verbs"] for rule in status_rules] == [["patch"]] * len(status_rules) != []


def test_every_rbac_rule_carries_a_comment(helm: Helm) -> None:
    """Each rule in the rendered YAML is preceded by a comment saying what needs it."""
    for values in VALUE_SETS.values():
        with values_file(values) as path:
            text = helm.run(
                "template", "strata", str(CHART), "--kube-version", "1.31.0", "--values", str(path)
            )
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        for index, line in enumerate(lines):
            if line.startswith("- apiGroups:"):
                assert lines[index - 1].startswith("#"), (
                    f"uncommented rule at: {lines[index - 1 : index + 3]}"
                )


def test_cluster_wide_mode_binds_workload_rights_cluster_wide(helm: Helm) -> None:
    manifests = helm.template()
    assert not by_kind(manifests, "Role")
    workloads = one(manifests, "ClusterRole", f"{FULLNAME}-workloads")
    pod_rule = next(r for r in workloads["rules"] if r["resources"] == ["pods"])
    assert sorted(pod_rule["verbs"]) == ["create", "delete", "get", "list", "watch"]
    binding = one(manifests, "ClusterRoleBinding", f"{FULLNAME}-workloads")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": "strata-system"}]
    assert env_of(manifests)["STRATA_WATCH_NAMESPACES"] == ""


def test_namespaced_mode_has_no_cluster_wide_workload_rights(helm: Helm) -> None:
    manifests = helm.template({**NAMESPACED, **HA})
    cluster_rules = [rule for role in by_kind(manifests, "ClusterRole") for rule in role["rules"]]
    granted = {
        (group, res) for rule in cluster_rules for group in rule["apiGroups"] for res in rule["resources"]
    }
    assert granted == {
        ("apiextensions.k8s.io", "customresourcedefinitions"),
        ("authentication.k8s.io", "tokenreviews"),
        ("", "nodes"),
    }
    assert [b["metadata"]["name"] for b in by_kind(manifests, "ClusterRoleBinding")] == [
        f"{FULLNAME}-cluster"
    ]
    for namespace in ("team-a", "team-b"):
        role = next(r for r in by_kind(manifests, "Role") if r["metadata"]["namespace"] == namespace)
        resources = {res for rule in role["rules"] for res in rule["resources"]}
        assert {"pods", "executions", "snapshots", "kopfpeerings"} <= resources
        binding = next(
            b for b in by_kind(manifests, "RoleBinding") if b["metadata"]["namespace"] == namespace
        )
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": FULLNAME,
        }
        assert binding["subjects"][0]["namespace"] == "strata-system"
    assert env_of(manifests)["STRATA_WATCH_NAMESPACES"] == "team-a,team-b"


def test_rbac_can_be_left_to_the_user(helm: Helm) -> None:
    manifests = helm.template({"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "ops"}})
    for kind in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "ServiceAccount"):
        assert not by_kind(manifests, kind), kind
    assert one(manifests, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


# -- replicas, peering, PDB --------------------------------------------------------------------------------


def test_single_replica_is_standalone_without_pdb(helm: Helm) -> None:
    manifests = helm.template()
    assert not by_kind(manifests, "PodDisruptionBudget")
    assert not by_kind(manifests, "ClusterKopfPeering")
    deployment = one(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert env_of(manifests)["STRATA_PEERING"] == ""
    assert not any("kopf.dev" in rule["apiGroups"] for _, rule in rules_of(manifests))


def test_several_replicas_peer_and_get_a_pdb(helm: Helm) -> None:
    manifests = helm.template(HA)
    pdb = one(manifests, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    pod_labels = one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert one(manifests, "Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"
    assert env_of(manifests)["STRATA_PEERING"] == "stratarouter"
    assert one(manifests, "ClusterKopfPeering")["metadata"]["name"] == "stratarouter"
    peering_rules = [rule for _, rule in rules_of(manifests) if "clusterkopfpeerings" in rule["resources"]]
    assert {tuple(sorted(r["verbs"])) for r in peering_rules} == {("list", "watch"), ("patch",)}
    assert [r.get("resourceNames") for r in peering_rules if "patch" in r["verbs"]] == [["stratarouter"]]


def test_several_replicas_in_namespaced_mode_peer_per_namespace(helm: Helm) -> None:
    manifests = helm.template({**HA, **NAMESPACED})
    peerings = by_kind(manifests, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["team-a", "team-b"]
    assert not by_kind(manifests, "ClusterKopfPeering")


def test_kopf_peering_crds_ship_in_the_chart_crds_dir(helm: Helm) -> None:
    names = {m["metadata"]["name"] for m in by_kind(helm.template(), "CustomResourceDefinition")}
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= names


# -- database --------------------------------------------------------------------------------------------


def test_bundled_postgresql_is_the_default(helm: Helm) -> None:
    manifests = helm.template()
    name = f"{FULLNAME}-postgresql"
    statefulset = one(manifests, "StatefulSet", name)
    assert statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "2Gi"
    secret = one(manifests, "Secret", name)
    url = base64.b64decode(secret["data"]["url"]).decode()
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert len(password) == 32
    assert url == f"postgresql://stratarouter:{password}@{name}.strata-system.svc:5432/stratarouter"
    assert env_of(manifests)["STRATA_DB_URL"] == {"secretKeyRef": {"name": name, "key": "url"}}
    service = one(manifests, "Service", name)
    assert (
        service["spec"]["selector"].items() <= statefulset["spec"]["template"]["metadata"]["labels"].items()
    )
    # The operator waits for it rather than crash-looping through its first start.
    wait = one(manifests, "Deployment")["spec"]["template"]["spec"]["initContainers"][0]
    assert wait["command"][-1] == f"{name}.strata-system.svc"


def test_bundled_postgresql_data_and_password_outlive_uninstall(helm: Helm) -> None:
    """The claim stays with the StatefulSet's Retain policy, so the Secret with its password stays too."""
    manifests = helm.template()
    name = f"{FULLNAME}-postgresql"
    assert one(manifests, "Secret", name)["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    statefulset = one(manifests, "StatefulSet", name)
    assert statefulset["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    # Offline, lookup finds no Secret: every render generates a fresh password (the cluster keeps its own).
    again = one(helm.template(), "Secret", name)
    assert again["data"]["password"] != one(manifests, "Secret", name)["data"]["password"]


def test_a_given_postgresql_password_is_used_as_is(helm: Helm) -> None:
    secret = one(helm.template({"postgresql": {"auth": {"password": "s3cret-pw"}}}), "Secret")
    assert base64.b64decode(secret["data"]["password"]).decode() == "s3cret-pw"
    assert ":s3cret-pw@" in base64.b64decode(secret["data"]["url"]).decode()


def test_bundled_postgresql_at_a_fixed_cluster_ip_is_reached_by_address(helm: Helm) -> None:
    manifests = helm.template({"postgresql": {"service": {"clusterIP": "10.96.7.8"}}})
    name = f"{FULLNAME}-postgresql"
    assert one(manifests, "Service", name)["spec"]["clusterIP"] == "10.96.7.8"
    url = base64.b64decode(one(manifests, "Secret", name)["data"]["url"]).decode()
    assert url.endswith("@10.96.7.8:5432/stratarouter"), url
    wait = one(manifests, "Deployment")["spec"]["template"]["spec"]["initContainers"][0]
    assert wait["command"][-1] == "10.96.7.8"
    assert "clusterIP" not in one(helm.template(), "Service", name)["spec"]


def test_bundled_postgresql_without_persistence_uses_emptydir(helm: Helm) -> None:
    statefulset = one(helm.template({"postgresql": {"persistence": {"enabled": False}}}), "StatefulSet")
    assert "volumeClaimTemplates" not in statefulset
    volumes = {v["name"]: v for v in statefulset["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}


def test_existing_secret_replaces_the_bundled_postgresql(helm: Helm) -> None:
    manifests = helm.template(EXTERNAL_DB)
    assert not by_kind(manifests, "StatefulSet")
    assert not by_kind(manifests, "Secret")
    assert env_of(manifests)["STRATA_DB_URL"] == {"secretKeyRef": {"name": "prod-db", "key": "dsn"}}
    assert "initContainers" not in one(manifests, "Deployment")["spec"]["template"]["spec"]


# -- service, API URL, optional objects --------------------------------------------------------------------


def test_service_fronts_the_api_and_pods_are_told_its_url(helm: Helm) -> None:
    manifests = helm.template()
    service = one(manifests, "Service", FULLNAME)
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]
    pod_labels = one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert env_of(manifests)["STRATA_API_URL_FOR_PODS"] == f"http://{FULLNAME}.strata-system.svc:8080"
    custom = helm.template({"operator": {"apiUrlForPods": "https://strata.example.com"}})
    assert env_of(custom)["STRATA_API_URL_FOR_PODS"] == "https://strata.example.com"


def test_operator_settings_become_strata_env(helm: Helm) -> None:
    env = env_of(
        helm.template(
            {
                "operator": {
                    "defaultCheckpointRetention": 50,
                    "defaultTtlSecondsAfterFinished": 3600,
                    "retentionIntervalSeconds": 15,
                    "statusPatchIntervalSeconds": 0.5,
                    "statusPatchBudgetPerSecond": 20,
                    "tokenCacheSeconds": 10,
                    "peeringLifetimeSeconds": 30,
                    "extraEnv": [{"name": "STRATA_HANDLER_RETRIES", "value": "3"}],
                }
            }
        )
    )
    assert env["STRATA_DEFAULT_CHECKPOINT_RETENTION"] == "50"
    assert env["STRATA_DEFAULT_TTL_SECONDS_AFTER_FINISHED"] == "3600"
    assert env["STRATA_RETENTION_INTERVAL_SECONDS"] == "15"
    assert env["STRATA_STATUS_PATCH_INTERVAL_SECONDS"] == "0.5"
    assert env["STRATA_STATUS_PATCH_BUDGET"] == "20"
    assert env["STRATA_TOKEN_CACHE_SECONDS"] == "10"
    assert env["STRATA_PEERING_LIFETIME_SECONDS"] == "30"
    assert env["STRATA_HANDLER_RETRIES"] == "3"
    assert env["STRATA_API_PORT"] == "8080"
    assert env["POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    defaults = env_of(helm.template())
    assert "STRATA_DEFAULT_CHECKPOINT_RETENTION" not in defaults
    assert "STRATA_DEFAULT_TTL_SECONDS_AFTER_FINISHED" not in defaults
    assert "STRATA_STATUS_PATCH_BUDGET" not in defaults  # the operator's own default (50/s)


def test_extra_args_are_options_of_the_operator_command(helm: Helm) -> None:
    assert operator_container(helm.template())["args"] == ["operator"]
    verbose = helm.template({"operator": {"extraArgs": ["--verbose", "--log-format", "json"]}})
    assert operator_container(verbose)["args"] == ["operator", "--verbose", "--log-format", "json"]


def test_image_defaults_are_the_locally_built_images(helm: Helm) -> None:
    """No image is published: the chart, NOTES.txt and the example name what `make images` builds."""
    manifests = helm.template()
    assert operator_container(manifests)["image"] == images.OPERATOR
    init = one(manifests, "Deployment")["spec"]["template"]["spec"]["initContainers"][0]
    assert init["image"] == images.OPERATOR
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    assert f"image: {images.WORKLOAD}\n" in notes
    assert "ghcr.io" not in notes
    example = yaml.safe_load((REPO / "examples" / "execution.yaml").read_text())
    assert [c["image"] for c in example["spec"]["template"]["spec"]["containers"]] == [images.WORKLOAD]
    build_script = (REPO / "hack" / "build-images.sh").read_text()
    for short in (images.OPERATOR, images.WORKLOAD):
        assert f"_ref=docker.io/library/{short}\n" in build_script, short


def test_image_tag_defaults_to_app_version_and_digest_wins(helm: Helm) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    untagged = helm.template({"image": {"repository": "r.example/op", "tag": ""}})
    assert operator_container(untagged)["image"] == f"r.example/op:{app_version}"
    digest = "sha256:" + "a" * 64
    pinned = helm.template({"image": {"repository": "r.example/op", "tag": "x", "digest": digest}})
    assert operator_container(pinned)["image"] == f"r.example/op@{digest}"


def test_optional_objects_are_off_by_default(helm: Helm) -> None:
    manifests = helm.template()
    assert not by_kind(manifests, "ServiceMonitor")
    assert not by_kind(manifests, "NetworkPolicy")


def test_service_monitor_scrapes_metrics(helm: Helm) -> None:
    monitor = one(
        helm.template({"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}), "ServiceMonitor"
    )
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_network_policies_admit_only_the_api_port_and_operator_to_postgresql(helm: Helm) -> None:
    manifests = helm.template({"networkPolicy": {"enabled": True}})
    operator_policy = one(manifests, "NetworkPolicy", FULLNAME)
    assert operator_policy["spec"]["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    db_policy = one(manifests, "NetworkPolicy", f"{FULLNAME}-postgresql")
    allowed = db_policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert allowed["app.kubernetes.io/component"] == "operator"
    external = helm.template({**EXTERNAL_DB, "networkPolicy": {"enabled": True}})
    assert [p["metadata"]["name"] for p in by_kind(external, "NetworkPolicy")] == [FULLNAME]


# -- CRDs ------------------------------------------------------------------------------------------------


def test_crds_come_from_files_with_the_keep_policy(helm: Helm) -> None:
    crds = stratarouter_crds(helm.template())
    files = sorted((CHART / "files" / "crds").glob("*.yaml"))
    assert files, "charts/stratarouter-operator/files/crds is empty: run `make crds`"
    assert sorted(c["metadata"]["name"] for c in crds) == sorted(
        yaml.safe_load(path.read_text())["metadata"]["name"] for path in files
    )
    for crd, path in zip(
        sorted(crds, key=lambda c: c["metadata"]["name"]), _sorted_by_name(files), strict=True
    ):
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert crd["spec"] == yaml.safe_load(path.read_text())["spec"]


def test_crds_can_be_left_out(helm: Helm) -> None:
    assert not stratarouter_crds(helm.template({"crds": {"install": False}}))


def _sorted_by_name(paths: list[Path]) -> list[Path]:
    return sorted(paths, key=lambda p: yaml.safe_load(p.read_text())["metadata"]["name"])


# -- offline renders: no cluster, no --kube-version ---------------------------------------------------------


def test_offline_render_needs_no_kube_version(helm: Helm) -> None:
    """Without a cluster the pinned Helm assumes a Kubernetes inside the chart's kubeVersion range."""
    out = helm.run("template", "strata", str(CHART), "--namespace", "strata-system")
    kinds = {doc["kind"] for doc in yaml.safe_load_all(out) if doc}
    assert {"Deployment", "StatefulSet", "CustomResourceDefinition"} <= kinds


def test_missing_watch_namespaces_do_not_fail_an_offline_render(helm: Helm) -> None:
    """The namespace check needs a cluster (lookup); offline it renders nothing and fails nothing."""
    manifests = helm.template({"watchNamespaces": ["surely-missing-a", "surely-missing-b"]})
    assert {m["metadata"]["namespace"] for m in by_kind(manifests, "RoleBinding")} == {
        "surely-missing-a",
        "surely-missing-b",
    }
