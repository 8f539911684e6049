"""The Helm chart (helm/autotts) rendered, linted and schema-validated offline, with its wiring checked.

Rendering and linting use `helm-python-sdk` (the Helm Go SDK through ctypes: no helm binary, no cluster);
every rendered manifest is validated against the Kubernetes schemas by `kubernetes-validate`. The Grafana
dashboard's PromQL may name only metrics the gateway really exports (a live `/metrics` scrape) or vLLM's.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

helm = pytest.importorskip("helm_python", reason="needs the dev extra: pip install -e '.[dev]' (helm-python-sdk)")
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="needs the dev extra (kubernetes-validate)")

from autotts.server.config import ENGINES, GatewayConfig  # noqa: E402

CHART = Path(__file__).resolve().parents[2] / "helm" / "autotts"
RELEASE, NAMESPACE, KUBE = "tts", "ml", "1.30.0"
ENGINE_SVC = f"{RELEASE}-autotts-engine"
ARMS = [{"name": "control", "controller": "cmc", "beta": 0.5, "weight": 0.9},
        {"name": "candidate", "controller": "esc", "beta": None, "weight": 0.1}]
ARTIFACT = json.dumps({"note": "replaced by a real artifact in the controllers test"})
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "sglang": {"engine": {"kind": "sglang", "model": "Qwen/Qwen3-8B"}},
    "arms": {"arms": ARMS, "gateway": {"aliases": {"tts-fast": "cmc:beta=0.2"}, "config": {"max_concurrent": 16}}},
    "replicas": {"engine": {"replicas": 3, "gpus": 2}, "autoscaling": {"enabled": False}, "gateway": {"replicas": 3}},
    "controllers": {"controllers": {"artifacts": {"tuned.json": ARTIFACT}, "reloadSeconds": 5}},
    "ingress": {"ingress": {"enabled": True, "className": "nginx", "host": "tts.example.org",
                            "tls": [{"secretName": "tts-tls", "hosts": ["tts.example.org"]}]},
                "adminToken": {"value": "s3cret"}},
}
# vLLM's own metric names the dashboard may use (the engine exports them, the gateway does not).
VLLM_METRICS = {"vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total", "vllm:num_requests_running",
                "vllm:num_requests_waiting", "vllm:generation_tokens_total", "vllm:kv_cache_usage_perc"}
CRD_KINDS = {"ServiceMonitor"}  # not in the Kubernetes schemas; checked structurally below


def render(values: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) -> manifest for one values set."""
    rendered = helm.Chart.load(CHART).render(values, name=RELEASE, namespace=NAMESPACE)
    docs: dict[tuple[str, str], dict[str, Any]] = {}
    for path, text in rendered.items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                key = (doc["kind"], doc["metadata"]["name"])
                assert key not in docs, f"{path}: duplicate {key}"
                docs[key] = doc
    return docs


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[tuple[str, str], dict[str, Any]]]:
    return {name: render(values) for name, values in VALUE_SETS.items()}


def _one(docs: dict, kind: str, component: str | None = None) -> dict[str, Any]:
    found = [d for (k, _), d in docs.items() if k == kind and
             (component is None or d["metadata"]["labels"].get("app.kubernetes.io/component") == component)]
    assert len(found) == 1, f"expected one {kind} {component or ''}, got {len(found)}"
    return found[0]


def _gateway_config(docs: dict) -> dict[str, Any]:
    return yaml.safe_load(docs[("ConfigMap", f"{RELEASE}-autotts-config")]["data"]["gateway.yaml"])


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("name", VALUE_SETS)
def test_chart_lints_clean_in_strict_mode(name: str) -> None:
    report = helm.lint(CHART, VALUE_SETS[name], strict=True, namespace=NAMESPACE)
    assert report["errors"] == [] and report["messages"] == [], report


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_manifest_passes_kubernetes_validate(name: str, rendered) -> None:
    docs = rendered[name]
    for (kind, _), doc in docs.items():
        if kind in CRD_KINDS:
            continue
        kubernetes_validate.validate(doc, KUBE, strict=True)  # raises ValidationError naming the field
    monitors = [d for (k, _), d in docs.items() if k == "ServiceMonitor"]
    assert len(monitors) == 2  # gateway and engine
    services = [d for (k, _), d in docs.items() if k == "Service"]
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        targets = [s for s in services if _matches(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
        assert len(targets) == 1, monitor["metadata"]["name"]
        ports = {p["name"] for p in targets[0]["spec"]["ports"]}
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["http"] and "http" in ports
        assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


@pytest.mark.parametrize("name", VALUE_SETS)
def test_gateway_points_at_the_engine_service_and_its_config_loads(name: str, rendered, tmp_path) -> None:
    docs = rendered[name]
    config = _gateway_config(docs)
    engine_svc = docs[("Service", ENGINE_SVC)]
    port = engine_svc["spec"]["ports"][0]["port"]
    if name == "replicas":  # one URL per engine pod (test_several_engine_replicas_... checks them)
        assert "engine_url" not in config and len(config["engine_urls"]) == 3
    else:
        assert config["engine_url"] == f"http://{ENGINE_SVC}:{port}" and "engine_urls" not in config
    engine = _one(docs, "StatefulSet", "engine")
    assert _matches(engine_svc["spec"]["selector"], engine["spec"]["template"]["metadata"]["labels"])
    gateway = _one(docs, "Deployment", "gateway")
    assert not _matches(engine_svc["spec"]["selector"], gateway["spec"]["template"]["metadata"]["labels"])
    assert config["host"] == "0.0.0.0" and config["port"] == 8000
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"][0]["containerPort"] == config["port"]
    # the gateway is started with the mounted config file
    config_path = container["args"][container["args"].index("--config") + 1]
    mount = next(m for m in container["volumeMounts"] if config_path.startswith(m["mountPath"] + "/"))
    volume = next(v for v in gateway["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == f"{RELEASE}-autotts-config"
    assert Path(config_path).name in docs[("ConfigMap", f"{RELEASE}-autotts-config")]["data"]
    # the rendered file is one `autotts serve --config` accepts
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    assert config["engine"] in ENGINES
    # (the controllers directory exists only in the pod: test_controller_artifacts_... loads it)
    loaded = GatewayConfig.load(path, env={}, overrides={"controllers_dir": str(tmp_path)} if
                                name == "controllers" else None)
    assert (loaded.engine_url, loaded.engine_urls, loaded.host, loaded.model) == \
        (config.get("engine_url"), config.get("engine_urls", []), "0.0.0.0", config["model"])


def test_vllm_engine_has_prefix_caching_gpus_and_the_model(rendered) -> None:
    for name in ("default", "replicas"):
        engine = _one(rendered[name], "StatefulSet", "engine")
        container = engine["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["vllm", "serve"]
        args = container["args"]
        assert args[0] == "Qwen/Qwen3-4B"
        assert "--enable-prefix-caching" in args and "--enable-prompt-tokens-details" in args
        gpus = VALUE_SETS[name].get("engine", {}).get("gpus", 1)
        assert container["resources"]["limits"]["nvidia.com/gpu"] == gpus
        assert _gateway_config(rendered[name])["engine"] == "vllm"


def test_sglang_engine_renders_its_own_server(rendered) -> None:
    docs = rendered["sglang"]
    container = _one(docs, "StatefulSet", "engine")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python3", "-m", "sglang.launch_server"]
    args = container["args"]
    assert args[args.index("--model-path") + 1] == "Qwen/Qwen3-8B" and "--enable-metrics" in args
    assert "--enable-prefix-caching" not in args and container["image"].startswith("lmsys/sglang:")
    assert _gateway_config(docs)["engine"] == "sglang"


def test_sglang_gateway_config_builds_the_sglang_adapter_for_the_engine_service(rendered, tmp_path) -> None:
    pytest.importorskip("httpx", reason="needs the serve extra")
    from autotts.engines.factory import make_engine
    from autotts.engines.sglang_http import SGLangHTTPEngine

    docs = rendered["sglang"]
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(_gateway_config(docs)))
    engine = make_engine(GatewayConfig.load(path, env={}))
    service = docs[("Service", ENGINE_SVC)]
    assert isinstance(engine, SGLangHTTPEngine)
    assert engine.url == f"http://{ENGINE_SVC}:{service['spec']['ports'][0]['port']}"
    container = _one(docs, "StatefulSet", "engine")["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert engine.model == args[args.index("--served-model-name") + 1] == "Qwen/Qwen3-8B"
    assert args[args.index("--port") + 1] == str(container["ports"][0]["containerPort"])
    assert service["spec"]["ports"][0]["targetPort"] in ("http", container["ports"][0]["containerPort"])


def test_several_engine_replicas_are_each_named_in_the_gateway_config(rendered, tmp_path) -> None:
    docs = rendered["replicas"]
    engine = _one(docs, "StatefulSet", "engine")
    assert engine["spec"]["replicas"] == 3
    # a headless Service gives every pod the DNS name <statefulset>-<i>.<service>, which the gateway pins
    # each request to (prefix-cache locality); the ordinary Service stays for clients and monitoring
    peers = docs[("Service", engine["spec"]["serviceName"])]
    assert peers["spec"]["clusterIP"] == "None"
    assert _matches(peers["spec"]["selector"], engine["spec"]["template"]["metadata"]["labels"])
    port = peers["spec"]["ports"][0]["port"]
    expected = [f"http://{engine['metadata']['name']}-{i}.{peers['metadata']['name']}:{port}" for i in range(3)]
    config = _gateway_config(docs)
    assert config["engine_urls"] == expected
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    pytest.importorskip("httpx", reason="needs the serve extra")
    from autotts.engines.factory import make_engine

    pool = make_engine(GatewayConfig.load(path, env={}))
    assert [replica.url for replica in pool.replicas] == expected
    assert sorted(n for (k, n) in docs if k == "Service" and "engine" in n) == [ENGINE_SVC, peers["metadata"]["name"]]
    assert _one(docs, "Deployment", "gateway")["spec"]["replicas"] == 3
    assert not any(k == "HorizontalPodAutoscaler" for k, _ in docs)
    assert "replicas" not in _one(rendered["default"], "Deployment", "gateway")["spec"]  # the HPA owns it


def test_arms_reach_the_gateway_config_and_roll_the_pods(rendered, tmp_path) -> None:
    config = _gateway_config(rendered["arms"])
    assert config["arms"] == ARMS
    assert config["aliases"] == {"tts-fast": "cmc:beta=0.2"} and config["max_concurrent"] == 16
    assert "arms" not in _gateway_config(rendered["default"])
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    assert "arms" in {f.name for f in fields(GatewayConfig)}
    assert GatewayConfig.load(path, env={}).arms == ARMS
    # a config change changes the pod template, so the gateway pods roll
    def checksum(values: dict) -> str:
        gateway = _one(render(values), "Deployment", "gateway")
        return gateway["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    changed = copy.deepcopy(VALUE_SETS["arms"])
    changed["arms"][1]["weight"] = 0.2
    assert checksum(VALUE_SETS["arms"]) != checksum(changed)
    assert checksum(VALUE_SETS["arms"]) == checksum(copy.deepcopy(VALUE_SETS["arms"]))


def test_the_gateway_pod_can_start_the_artifact_sandbox() -> None:
    """bubblewrap needs user namespaces: the runtimes' default seccomp/AppArmor profiles refuse them."""
    for values, apparmor in (({}, {"type": "Unconfined"}), ({"sandbox": {"appArmorProfile": None}}, None)):
        docs = render(values)
        pod = _one(docs, "Deployment", "gateway")["spec"]["template"]["spec"]
        container = pod["containers"][0]["securityContext"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "Unconfined"}
        assert container.get("appArmorProfile") == apparmor
        assert container["allowPrivilegeEscalation"] is False and container["capabilities"] == {"drop": ["ALL"]}
        assert pod["securityContext"]["runAsNonRoot"] is True  # the sandbox works unprivileged
        config = _gateway_config(docs)
        assert (config["allow_unsandboxed"], config["sandbox_spares"]) == (False, 2)
    strict = _one(render({"sandbox": {"seccompProfile": "RuntimeDefault", "allowUnsandboxed": True}}),
                  "Deployment", "gateway")
    assert strict["spec"]["template"]["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_controller_artifacts_are_mounted_loaded_and_hot_reloaded_not_rolled(tmp_path) -> None:
    pytest.importorskip("fastapi", reason="needs the serve extra")
    from autotts.controllers.artifact import save_artifact
    from autotts.server.controller_set import build_set

    source = ("from autotts.controllers.builtins.sc import SelfConsistency\n\n"
              "class Tuned(SelfConsistency):\n    name = 'tuned'\n    version = 3\n")
    artifact = save_artifact(tmp_path / "made" / "tuned.json", source, single_file=True).read_text()
    values = copy.deepcopy(VALUE_SETS["controllers"])
    values["controllers"]["artifacts"]["tuned.json"] = artifact
    docs = render(values)
    config = _gateway_config(docs)
    assert (config["allow_code"], config["allow_unsandboxed"], config["reload_interval_s"]) == (False, False, 5)
    gateway = _one(docs, "Deployment", "gateway")["spec"]["template"]["spec"]
    mount = next(m for m in gateway["containers"][0]["volumeMounts"] if m["mountPath"] == config["controllers_dir"])
    volume = next(v for v in gateway["volumes"] if v["name"] == mount["name"])
    data = docs[("ConfigMap", volume["configMap"]["name"])]["data"]
    assert set(data) == {"tuned.json"}
    # what the pod sees at the mount path, loaded the way the gateway loads it (hash checked, code allowed)
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    (mounted / "tuned.json").write_text(data["tuned.json"])
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    loaded = build_set(GatewayConfig.load(path, env={}, overrides={"controllers_dir": str(mounted)}))
    entry = next(e for e in loaded.entries if e["name"] == "tuned")
    assert (entry["version"], entry["sha256"], entry["isolation"]) == ("3", json.loads(artifact)["sha256"], "sandbox")
    assert "controllers_dir" not in _gateway_config(render({}))

    def checksum(values: dict) -> str:
        gateway = _one(render(values), "Deployment", "gateway")
        return gateway["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    edited = copy.deepcopy(VALUE_SETS["controllers"])
    edited["controllers"]["artifacts"]["tuned.json"] = '{"edited": true}'
    assert checksum(edited) == checksum(VALUE_SETS["controllers"])  # no restart: the gateway reloads it


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_container_has_probes_resources_and_the_gateway_runs_unprivileged(name: str, rendered) -> None:
    for (kind, obj), doc in rendered[name].items():
        if kind not in ("Deployment", "StatefulSet"):
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            assert container["readinessProbe"]["httpGet"]["path"] == "/health", obj
            assert container["livenessProbe"]["httpGet"]["port"] == "http", obj
            assert container["resources"]["requests"] and container["resources"]["limits"], obj
    gateway = _one(rendered[name], "Deployment", "gateway")["spec"]["template"]["spec"]
    assert gateway["securityContext"]["runAsNonRoot"] is True and gateway["securityContext"]["runAsUser"] != 0
    # /health is 503 while the engine is down: readiness, not liveness (no restart loop on an engine outage)
    assert gateway["containers"][0]["livenessProbe"]["httpGet"]["path"] != "/health"


def test_ingress_routes_to_the_gateway_service(rendered) -> None:
    docs = rendered["ingress"]
    ingress = _one(docs, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    service = docs[("Service", backend["name"])]
    assert service["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    assert ingress["spec"]["ingressClassName"] == "nginx" and ingress["spec"]["tls"][0]["secretName"] == "tts-tls"
    assert not any(k == "Ingress" for k, _ in rendered["default"])


def test_admin_token_secret_reaches_the_gateway_env(rendered) -> None:
    docs = rendered["ingress"]
    env = _one(docs, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0]["env"]
    ref = next(e for e in env if e["name"] == "AUTOTTS_ADMIN_TOKEN")["valueFrom"]["secretKeyRef"]
    secret = docs[("Secret", ref["name"])]
    assert base64.b64decode(secret["data"][ref["key"]]).decode() == "s3cret"
    assert not any(k == "Secret" for k, _ in rendered["default"])
    existing = render({"adminToken": {"existingSecret": "ops-token", "key": "admin"}})
    assert not any(k == "Secret" for k, _ in existing)
    env = _one(existing, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[0]["valueFrom"]["secretKeyRef"] == {"name": "ops-token", "key": "admin"}


def test_network_policy_admits_only_the_gateway_to_the_engine(rendered) -> None:
    docs = rendered["default"]
    policy = _one(docs, "NetworkPolicy")
    engine = _one(docs, "StatefulSet", "engine")["spec"]["template"]["metadata"]["labels"]
    gateway = _one(docs, "Deployment", "gateway")["spec"]["template"]["metadata"]["labels"]
    assert _matches(policy["spec"]["podSelector"]["matchLabels"], engine)
    peers = policy["spec"]["ingress"][0]["from"]
    assert len(peers) == 1 and _matches(peers[0]["podSelector"]["matchLabels"], gateway)
    assert not _matches(peers[0]["podSelector"]["matchLabels"], engine)
    pdb = _one(docs, "PodDisruptionBudget")
    assert _matches(pdb["spec"]["selector"]["matchLabels"], gateway)


@pytest.mark.parametrize("bad", [{"engine": {"kind": "tgi", "model": "m"}}, {"arms": [{"name": "a"}]},
                                 {"arms": [{"name": "a", "controller": "cmc", "weight": 0}]},
                                 {"gateway": {"config": {"host": "127.0.0.1"}}}, {"enginee": {}}])
def test_values_schema_rejects_bad_values(bad: dict) -> None:
    with pytest.raises(helm.HelmError):
        helm.Chart.load(CHART).render(bad, name=RELEASE)


def test_readme_documents_every_top_level_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    table = [line for line in (CHART / "README.md").read_text().splitlines() if line.startswith("| `")]
    documented = {re.match(r"\| `([^`.]+)", line).group(1) for line in table}
    assert set(values) <= documented, set(values) - documented
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(values) == set(schema["properties"])


# --- the dashboard --------------------------------------------------------------------------------------

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
             "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (function names, labels, ranges and strings removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors ([5m], [$__range])
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        rest = expr[match.end():].lstrip()
        if rest.startswith("(") or match.group().lower() in _KEYWORDS:
            continue  # a function call or an operator keyword
        names.add(match.group())
    return names


def test_metric_names_parses_promql() -> None:
    expr = ('histogram_quantile(0.95, sum by (le, arm) (rate(autotts_request_latency_seconds_bucket{arm!="x"}'
            '[$__rate_interval]))) / on (arm) sum(vllm:num_requests_running) > bool 0')
    assert metric_names(expr) == {"autotts_request_latency_seconds_bucket", "vllm:num_requests_running"}


def _dashboard() -> dict[str, Any]:
    return json.loads((CHART / "dashboards" / "autotts.json").read_text())


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def _gateway_metric_names() -> set[str]:
    """Every metric family and sample name the gateway's /metrics shows after one real request."""
    pytest.importorskip("fastapi", reason="needs the serve extra")
    import httpx
    from autotts.offline.evaluate import bundled_data_dir
    from autotts.offline.store import load_store
    from autotts.server.app import build_app
    from autotts.server.background import BackgroundServer

    store = bundled_data_dir() / "Qwen3-4B" / "aime24.parquet"
    question = load_store(store).questions[0]
    app = build_app(GatewayConfig.load(overrides={"stores": [str(store)]}, env={}))
    with BackgroundServer(app) as gateway:
        body = {"seed": 0, "messages": [{"role": "user", "content": question}], "tts": {"controller": "cmc"}}
        assert httpx.post(gateway + "/v1/chat/completions", json=body, timeout=60).status_code == 200
        text = httpx.get(gateway + "/metrics", timeout=10).text
    names = set()
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group())
    return names


def test_dashboard_is_valid_and_uses_only_exported_metrics() -> None:
    dashboard = _dashboard()
    rendered = render({})[("ConfigMap", f"{RELEASE}-autotts-dashboard")]
    assert rendered["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(rendered["data"]["autotts.json"]) == dashboard
    assert [p["id"] for p in dashboard["panels"]] == sorted({p["id"] for p in dashboard["panels"]})
    exported = _gateway_metric_names()
    assert "autotts_tokens_total" in exported and "autotts_requests_total" in exported  # the scrape is real
    used: set[str] = set()
    for expr in _exprs(dashboard):
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        unknown = names - exported - VLLM_METRICS
        assert not unknown, f"{expr!r} names metrics neither the gateway nor vLLM exports: {sorted(unknown)}"
        used |= names
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("tokens", "accuracy", "prune", "latency", "prefix-cache"):
        assert topic in titles, topic
    assert {"autotts_feedback_total", "autotts_prunes_total", "autotts_request_latency_seconds_bucket",
            "vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"} <= used
