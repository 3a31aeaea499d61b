"""The Helm chart in deploy/helm/philedger: `helm lint`, `helm template`, and every
rendered object valid against the Kubernetes API's schemas (kubeconform, strict), then
what the objects must say: scalable consumers, the API behind a Service, secrets only
as files, probes on /livez and /readyz, non-root pods with read-only root file systems.

helm, kubeconform and the schemas come from deploy/local/gotools.sh (`make test` runs it
when they are missing); without them these tests are skipped, except in CI.
"""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from ledgerctl.configfile import toml_keys
from ledgerctl.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "philedger"
TOOLS = Path(os.environ.get("LEDGER_GOTOOLS_DIR") or ROOT / ".local")
HELM = TOOLS / "bin" / "helm"
KUBECONFORM = TOOLS / "bin" / "kubeconform"


def _k8s_version() -> str:
    script = (ROOT / "deploy" / "local" / "gotools.sh").read_text(encoding="utf-8")
    return script.split('K8S_VERSION="', 1)[1].split('"', 1)[0]


SCHEMAS = TOOLS / "k8s-schemas" / f"v{_k8s_version()}-strict"

if not (HELM.is_file() and KUBECONFORM.is_file() and SCHEMAS.is_dir()):
    if os.environ.get("CI"):
        raise RuntimeError(f"helm, kubeconform or the schemas missing in {TOOLS}: run gotools.sh")
    pytest.skip(
        f"helm/kubeconform/schemas not in {TOOLS}: run deploy/local/gotools.sh",
        allow_module_level=True,
    )


def run(*args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], input=stdin, capture_output=True, text=True, check=False
    )


def render(*sets: str) -> str:
    flags = [f"--set={s}" for s in sets]
    done = run(HELM, "template", "ledger", CHART, "--namespace", "phi", *flags)
    assert done.returncode == 0, done.stderr
    return done.stdout


def objects(rendered: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def kubeconform(rendered: str) -> subprocess.CompletedProcess[str]:
    location = f"{SCHEMAS}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json"
    flags = ("-strict", "-summary", "-schema-location", location)
    return run(KUBECONFORM, *flags, "-", stdin=rendered)


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_helm_lint_passes() -> None:
    done = run(HELM, "lint", "--strict", CHART)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    "sets",
    [
        (),
        ("atna.enabled=false", "rules.enabled=false"),
        ("rulesToml=[roles]", "consumer.replicas=6", "api.storageClassName=fast"),
    ],
)
def test_every_object_is_valid_kubernetes(sets: tuple[str, ...]) -> None:
    done = kubeconform(render(*sets))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Invalid: 0, Errors: 0, Skipped: 0" in done.stdout


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ("runAsNonRoot: true", "runAsNonRot: true", "additional properties 'runAsNonRot'"),
        ("replicas: 2", "replicas: two", "want null or integer"),
        ("kind: StatefulSet", "kind: StatefulSett", "could not find schema"),
    ],
)
def test_kubeconform_would_catch_a_broken_object(old: str, new: str, says: str) -> None:
    done = kubeconform(render().replace(old, new, 1))
    assert done.returncode != 0
    assert says in done.stdout


def test_the_objects_of_the_chart() -> None:
    docs = objects(render())
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == [
        ("ConfigMap", "ledger-philedger-config"),
        ("Deployment", "ledger-philedger-rules"),
        ("PodDisruptionBudget", "ledger-philedger-api"),
        ("PodDisruptionBudget", "ledger-philedger-consumer"),
        ("Service", "ledger-philedger-api"),
        ("Service", "ledger-philedger-atna"),
        ("Service", "ledger-philedger-consumer"),
        ("StatefulSet", "ledger-philedger-api"),
        ("StatefulSet", "ledger-philedger-atna"),
        ("StatefulSet", "ledger-philedger-consumer"),
    ]


def test_consumers_scale_with_stable_member_ids() -> None:
    sets = by_kind(objects(render("consumer.replicas=5")), "StatefulSet")
    consumer = sets["ledger-philedger-consumer"]
    assert consumer["spec"]["replicas"] == 5
    container = consumer["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["consume"]
    instance = next(e for e in container["env"] if e["name"] == "LEDGER_CONSUMER_INSTANCE_ID")
    assert instance["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_the_api_is_behind_a_service() -> None:
    docs = objects(render())
    service = by_kind(docs, "Service")["ledger-philedger-api"]
    api = by_kind(docs, "StatefulSet")["ledger-philedger-api"]
    pod = api["spec"]["template"]
    assert service["spec"]["selector"] == pod["metadata"]["labels"]
    container = pod["spec"]["containers"][0]
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"] == "http"
    assert container["args"] == ["serve", "--host", "0.0.0.0", "--port", "18080"]


def test_every_process_is_probed_on_its_ops_listener() -> None:
    """/livez and /readyz on the ops port (docs/observability.md), which every process
    binds on the pod's address (LEDGER_OPS_HOST), never the API's public port."""
    docs = objects(render())
    workloads = [d for d in docs if d["kind"] in {"StatefulSet", "Deployment"}]
    assert {d["metadata"]["name"] for d in workloads} >= {
        "ledger-philedger-api", "ledger-philedger-consumer", "ledger-philedger-atna",
        "ledger-philedger-rules",
    }  # fmt: skip
    for workload in workloads:
        container = workload["spec"]["template"]["spec"]["containers"][0]
        name = workload["metadata"]["name"]
        assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "ops"}, name
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ops"}, name
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["ops"] == 9464, name
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["LEDGER_OPS_PORT"] == "9464", name
        assert env["LEDGER_OPS_HOST"] == "0.0.0.0", name


def _pods(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        d["spec"]["template"]["spec"] for d in docs if d["kind"] in {"StatefulSet", "Deployment"}
    ]


def test_pods_are_non_root_with_read_only_root_file_systems() -> None:
    pods = _pods(objects(render()))
    assert len(pods) == 4
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"] + pod["initContainers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}


def test_secrets_come_from_secrets_as_files() -> None:
    """No secret value in the chart: every Secret is mounted, copied mode 600 into a
    memory volume, and named by a *_FILE setting or the Kafka credentials directory."""
    docs = objects(render())
    assert not by_kind(docs, "Secret")
    for pod in _pods(docs):
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["secrets-in"]["secret"]["secretName"].startswith("philedger-")
        assert volumes["secrets"]["emptyDir"]["medium"] == "Memory"
        copy = pod["initContainers"][0]
        assert "install -m 0600 /secrets-in/* /run/secrets/philedger/" in copy["command"][-1]
        for env in pod["containers"][0]["env"]:
            if env["name"].endswith(("_URL", "_TOKEN", "PASSWORD")):
                pytest.fail(f"{env['name']} given as a value")
            if env["name"].endswith("_FILE") and env["name"] != "LEDGER_CONFIG_FILE":
                assert env["value"].startswith("/run/secrets/philedger/"), env


def test_the_config_map_is_a_valid_ledger_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = objects(render("rulesToml=[roles]"))
    data = by_kind(docs, "ConfigMap")["ledger-philedger-config"]["data"]
    config = tomllib.loads(data["ledger.toml"])
    names, _ = toml_keys(Settings)
    assert set(config) <= set(names)
    assert config["rules_file"] == "/etc/philedger/compliance-rules.toml"
    assert "compliance-rules.toml" in data
    (tmp_path / "ledger.toml").write_text(data["ledger.toml"], encoding="utf-8")
    monkeypatch.setenv("LEDGER_CONFIG_FILE", str(tmp_path / "ledger.toml"))
    for field in Settings.model_fields.values():
        monkeypatch.delenv(field.alias or "", raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.kafka_bootstrap.count(",") == 2
    assert settings.spool_dir == "/var/lib/philedger/spool"
