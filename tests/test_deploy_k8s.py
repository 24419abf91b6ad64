"""The Kubernetes manifests in deploy/k8s, checked offline (no cluster runs here).

Built-in kinds are validated strictly (unknown fields are errors) against the Kubernetes
OpenAPI schemas that ship in the ``kubernetes-validate`` package; KEDA's kinds (custom
resources, no schema there) against pydantic models of the fields the manifests rely on,
with unknown fields forbidden. Then what ties them together: names, labels, probes, the GPU,
and that the KEDA triggers watch the streams and group the settings in the ConfigMap name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel, ConfigDict

from cxguard.runtime.asr_wire import work_streams
from cxguard.runtime.settings_loader import load

K8S = Path(__file__).resolve().parents[1] / "deploy" / "k8s"
VERSION = "1.30"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Meta(_Strict):
    name: str


class _SecretRef(_Strict):
    parameter: Literal["password", "username", "address"]
    name: str
    key: str


class _TriggerAuthSpec(_Strict):
    secretTargetRef: list[_SecretRef]


class TriggerAuthentication(_Strict):
    apiVersion: Literal["keda.sh/v1alpha1"]
    kind: Literal["TriggerAuthentication"]
    metadata: _Meta
    spec: _TriggerAuthSpec


class _StreamsMetadata(_Strict):
    address: str
    stream: str
    consumerGroup: str
    lagCount: str
    activationLagCount: str


class _AuthRef(_Strict):
    name: str


class _Trigger(_Strict):
    type: Literal["redis-streams"]
    metadata: _StreamsMetadata
    authenticationRef: _AuthRef


class _Target(_Strict):
    name: str


class _ScaledObjectSpec(_Strict):
    scaleTargetRef: _Target
    minReplicaCount: int
    maxReplicaCount: int
    pollingInterval: int
    cooldownPeriod: int
    triggers: list[_Trigger]


class ScaledObject(_Strict):
    apiVersion: Literal["keda.sh/v1alpha1"]
    kind: Literal["ScaledObject"]
    metadata: _Meta
    spec: _ScaledObjectSpec


@pytest.fixture(scope="module")
def docs() -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def test_every_manifest_is_valid(docs: dict[tuple[str, str], dict[str, Any]]) -> None:
    custom: dict[str, type[_Strict]] = {
        "ScaledObject": ScaledObject,
        "TriggerAuthentication": TriggerAuthentication,
    }
    for (kind, _name), doc in docs.items():
        if kind in custom:
            custom[kind].model_validate(doc)
        else:
            kubernetes_validate.validate(doc, VERSION, strict=True)
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"
    )


def test_a_broken_manifest_is_caught(docs: dict[tuple[str, str], dict[str, Any]]) -> None:
    import copy

    bad = copy.deepcopy(docs[("Deployment", "cxguard-sidecar")])
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pathh"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, VERSION, strict=True)
    scaled = copy.deepcopy(docs[("ScaledObject", "cxguard-asr-worker")])
    scaled["spec"]["triggers"][0]["metadata"]["lagcount"] = "3"
    with pytest.raises(ValueError):
        ScaledObject.model_validate(scaled)


def _container(doc: dict[str, Any]) -> dict[str, Any]:
    containers = doc["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def test_the_sidecar_is_ready_on_readyz_scales_on_calls_and_drains(
    docs: dict[tuple[str, str], dict[str, Any]],
) -> None:
    deployment = docs[("Deployment", "cxguard-sidecar")]
    sidecar = _container(deployment)
    assert sidecar["args"][:2] == ["cxguard", "serve"]
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 300
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = docs[("Service", "cxguard-sidecar")]
    assert service["spec"]["selector"].items() <= labels.items()
    hpa = docs[("HorizontalPodAutoscaler", "cxguard-sidecar")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "cxguard-sidecar"
    metric = hpa["spec"]["metrics"][0]["pods"]
    assert metric["metric"]["name"] == "cxguard_active_calls"  # cxguard/runtime/metrics.py
    from cxguard.runtime import metrics

    assert metrics.ACTIVE_CALLS._name == "cxguard_active_calls"


def test_the_asr_workers_take_a_gpu_and_keda_watches_the_configured_streams(
    docs: dict[tuple[str, str], dict[str, Any]], tmp_path: Path
) -> None:
    deployment = docs[("Deployment", "cxguard-asr-worker")]
    worker = _container(deployment)
    assert worker["args"][:2] == ["cxguard", "asr-worker"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "$(POD_NAME)" in worker["args"]  # one consumer name per pod
    scaled = ScaledObject.model_validate(docs[("ScaledObject", "cxguard-asr-worker")])
    assert scaled.spec.scaleTargetRef.name == "cxguard-asr-worker"
    auth = docs[("TriggerAuthentication", "cxguard-redis")]
    assert {t.authenticationRef.name for t in scaled.spec.triggers} == {auth["metadata"]["name"]}

    # The ConfigMap's settings load (strictly), and the triggers watch what they name.
    config = docs[("ConfigMap", "cxguard-config")]["data"]["cxguard.yaml"]
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in ("evidence_url", "redis_url", "metrics_token"):
        value = "redis://:pw@redis:6379/0" if name == "redis_url" else "x" * 32
        if name == "evidence_url":
            value = "postgresql+psycopg://cxguard:pw@postgres:5432/cxguard"
        (secrets / name).write_text(value)
    path = tmp_path / "cxguard.yaml"
    path.write_text(config.replace("/run/secrets/", f"{secrets}/"), encoding="utf-8")
    settings = load(path, None, {})
    assert settings.asr.pool == "redis" and settings.admission.max_active_calls > 0
    assert {t.metadata.stream for t in scaled.spec.triggers} == set(
        work_streams(settings.asr.stream)
    )
    assert {t.metadata.consumerGroup for t in scaled.spec.triggers} == {settings.asr.group}
    # The HPA scales out before a pod reaches its admission cap.
    hpa = docs[("HorizontalPodAutoscaler", "cxguard-sidecar")]
    target = int(hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"])
    assert target < settings.admission.max_active_calls
