"""The deployment files, checked without a Docker engine or a cluster: the Dockerfile under hadolint and its build
steps performed in a clean folder, its health check against a live /health, compose.yaml against the Compose
specification, the Kubernetes manifests with kubernetes-validate, the CI workflow against GitHub's schema, and
what .dockerignore keeps out of the image."""

import grp
import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import kubernetes_validate
import pytest
import yaml

from host.settings import Settings
from tests.conftest import POSTGRES_URL, ROOT, free_port

VENV_BIN = Path(sys.executable).parent  # the dev tools (hadolint, check-jsonschema) live beside this Python
KUBERNETES = ROOT / "deploy" / "kubernetes"
SETTING_NAMES = {name.upper() for name in Settings.model_fields}


# ---- the Dockerfile, read as Docker reads it ----


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    arguments: str


def dockerfile_stages(text: str) -> dict[str, list[Instruction]]:
    """Each stage's instructions by the stage's name (`FROM ... AS name`); continuation lines joined, comments
    dropped (also those between continuation lines, as Docker drops them)."""
    stages: dict[str, list[Instruction]] = {}
    current: list[Instruction] = []
    logical = ""
    for line in text.splitlines():
        if line.strip().startswith("#") or (not logical and not line.strip()):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        keyword, _, arguments = logical.strip().partition(" ")
        logical = ""
        instruction = Instruction(keyword.upper(), arguments.strip())
        if instruction.keyword == "FROM":
            words = instruction.arguments.split()
            current = stages.setdefault(words[-1].lower() if len(words) == 3 else str(len(stages)), [])
        current.append(instruction)
    return stages


DOCKERFILE = dockerfile_stages((ROOT / "Dockerfile").read_text())


def instructions(stage: str, keyword: str) -> list[str]:
    return [step.arguments for step in DOCKERFILE[stage] if step.keyword == keyword]


def env_values(stage: str) -> dict[str, str]:
    """A stage's `ENV A=1 B=2` lines as a dict (values here hold no spaces)."""
    values: dict[str, str] = {}
    for arguments in instructions(stage, "ENV"):
        values.update(word.split("=", 1) for word in arguments.split())
    return values


def final_stage() -> str:
    return list(DOCKERFILE)[-1]


# ---- .dockerignore, matched as Docker matches it ----


def dockerignore_rules() -> list[tuple[re.Pattern[str], bool]]:
    """(pattern, excludes) in file order; the last rule that matches a path decides, `!` keeps."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        pattern = PurePosixPath(line.lstrip("!").strip("/")).as_posix()
        regex = ""
        for piece in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
            regex += {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(piece, re.escape(piece))
        rules.append((re.compile(regex), not keep))
    return rules


def ignored(relative: str, rules: list[tuple[re.Pattern[str], bool]]) -> bool:
    """Whether the build context leaves `relative` out: a rule matches a path or any folder above it."""
    parts = PurePosixPath(relative).parts
    candidates = ["/".join(parts[: end + 1]) for end in range(len(parts))]
    result = False
    for regex, excludes in rules:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            result = excludes
    return result


def context_files(source: Path) -> Iterator[Path]:
    """The files under `source` (a file or a folder of the repository) that reach the build context."""
    rules = dockerignore_rules()
    paths = [source] if source.is_file() else sorted(path for path in source.rglob("*") if path.is_file())
    for path in paths:
        if not ignored(path.relative_to(ROOT).as_posix(), rules):
            yield path


# ---- the Dockerfile ----


def test_the_dockerfile_is_clean_under_hadolint() -> None:
    done = subprocess.run(
        [str(VENV_BIN / "hadolint"), "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_runs_mcpbot_as_a_non_root_user_with_a_data_volume() -> None:
    final = final_stage()
    # the last USER of the default stage (and of its base, `slim`) is a numeric non-root id, as Kubernetes'
    # runAsNonRoot can check
    for stage in (final, "slim"):
        users = instructions(stage, "USER")
        assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    assert json.loads(instructions("slim", "ENTRYPOINT")[-1]) + json.loads(instructions("slim", "CMD")[-1]) == [
        "mcpbot",
        "run",
    ]
    data_dir = env_values("slim")["DATA_DIR"]
    assert json.loads(instructions("slim", "VOLUME")[-1]) == [data_dir]
    # the runtime takes the build stage's folder whole, and finds the bot's scripts on PATH
    workdir = instructions("build", "WORKDIR")[-1]
    assert f"--from=build {workdir} {workdir}" in instructions("slim", "COPY")
    assert env_values("slim")["PATH"].startswith(f"{workdir}/.venv/bin:")
    # Node.js (npx) in the default image, from the official image
    assert any(step.startswith("--from=node /usr/local/bin/node ") for step in instructions(final, "COPY"))


def this_machines_uv() -> list[str]:
    """The uv the README's commands use: $UV as scripts/test exports it, else what scripts/find-uv finds."""
    if os.environ.get("UV"):
        return shlex.split(os.environ["UV"])
    found = subprocess.run(
        ["bash", "-c", 'source scripts/find-uv && echo "$UV"'], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return shlex.split(found.stdout.strip())


# The build stage's RUN steps this test does not perform, and why.
NOT_PERFORMED = {
    "pip install": "installs uv into the image; this machine's uv (scripts/find-uv) stands in for it",
}


def test_the_build_stage_installs_the_bot_and_our_three_servers_and_nothing_for_tests(tmp_path: Path) -> None:
    """The build stage's WORKDIR, ENV, COPY and `uv sync` steps, in their order, in a clean folder."""
    app = tmp_path / "app"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("UV_", "VIRTUAL_ENV"))}
    if "UV_CACHE_DIR" in os.environ:
        env["UV_CACHE_DIR"] = os.environ["UV_CACHE_DIR"]
    syncs = 0
    for step in DOCKERFILE["build"][1:]:
        if step.keyword == "WORKDIR":
            app.mkdir(parents=True, exist_ok=True)
        elif step.keyword == "ENV":
            env.update(word.split("=", 1) for word in step.arguments.split())
        elif step.keyword == "COPY":
            *sources, destination = step.arguments.split()
            assert not any(source.startswith("--") for source in sources), f"teach this test COPY {step.arguments}"
            for source in sources:
                for file in context_files(ROOT / source):
                    below = file.relative_to(ROOT / source) if (ROOT / source).is_dir() else Path(file.name)
                    target = app / destination / below
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(file, target)
        elif step.keyword == "RUN" and step.arguments.startswith("uv "):
            command = [*this_machines_uv(), *step.arguments.split()[1:]]
            done = subprocess.run(command, cwd=app, env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, f"{step.arguments}: {done.stderr}"
            syncs += 1
        elif step.keyword == "RUN":
            assert any(step.arguments.startswith(known) for known in NOT_PERFORMED), f"teach this test: {step}"
        elif step.keyword != "ARG":
            pytest.fail(f"teach this test the build step {step}")
    assert syncs == 2
    for step in instructions("build", "RUN"):
        if step.startswith("uv sync"):
            assert "--locked" in step and "--no-default-groups" in step  # the lock file, and the bot's packages only

    bin_folder = app / ".venv" / "bin"
    site_packages = next((app / ".venv" / "lib").glob("python3*/site-packages"))
    assert not (site_packages / "pytest").exists() and not (site_packages / "llama_cpp").exists()
    helps = {}
    for program in ("mcpbot", "mcpbot-filesystem", "mcpbot-database", "mcpbot-template"):
        done = subprocess.run([str(bin_folder / program), "--help"], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and "usage:" in done.stdout, (program, done.stderr)
        helps[program] = done.stdout
    assert "run" in helps["mcpbot"]  # the image's ENTRYPOINT and CMD

    # The installed bot, in the image's working folder with its shipped mcp_servers.json, starts both servers.
    nothing = tmp_path / "empty-bin"
    nothing.mkdir()
    done = subprocess.run(
        [str(bin_folder / "mcpbot"), "servers", "--json"],
        cwd=app,
        env={"PATH": str(nothing), "HOME": str(tmp_path), "DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "ERROR"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    status = {server["name"]: server["status"] for server in json.loads(done.stdout)["servers"]}
    assert status == {"filesystem": "connected", "database": "connected"}
    assert (tmp_path / "data" / "workspaces" / "0").is_dir()


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[int, type[_Health]]]:
    """A stand-in for the bot's /health on a free port; set the class's `status` to what it answers."""
    handler = type("Health", (_Health,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def run_healthcheck(**environment: str) -> int:
    arguments = instructions("slim", "HEALTHCHECK")[-1]
    command = json.loads(arguments[arguments.index("CMD ") + 4 :])
    assert command[0] == "python"  # the image's Python (slim images have no curl)
    done = subprocess.run([sys.executable, *command[1:]], env=environment, capture_output=True, timeout=30)
    return done.returncode


def test_the_health_check_asks_the_metrics_port_when_polling_and_the_webhook_port_with_a_webhook(
    health_server: tuple[int, type[_Health]],
) -> None:
    port, handler = health_server
    closed = str(free_port())
    assert run_healthcheck(METRICS_PORT=str(port), WEBHOOK_PORT=closed) == 0
    assert run_healthcheck(METRICS_PORT=closed, WEBHOOK_PORT=str(port)) != 0
    webhook = "https://bot.example.com/telegram/webhook"
    assert run_healthcheck(TELEGRAM_WEBHOOK_URL=webhook, METRICS_PORT=closed, WEBHOOK_PORT=str(port)) == 0
    assert run_healthcheck(TELEGRAM_WEBHOOK_URL=webhook, METRICS_PORT=str(port), WEBHOOK_PORT=closed) != 0
    handler.status = 503
    assert run_healthcheck(METRICS_PORT=str(port)) != 0
    # the image sets what the check reads
    assert {"METRICS_HOST": "0.0.0.0", "METRICS_PORT": "9464", "WEBHOOK_PORT": "8080"}.items() <= env_values(
        "slim"
    ).items()


def test_dockerignore_keeps_secrets_and_local_state_out_and_everything_the_build_copies_in() -> None:
    rules = dockerignore_rules()
    for private in (
        ".env",
        ".env.production",
        ".venv/bin/python",
        ".git/config",
        "data/mcpbot.db",
        "node_modules/x/package.json",
        "host/__pycache__/app.cpython-311.pyc",
    ):
        assert ignored(private, rules), private
    assert not ignored(".env.example", rules)
    copied = [
        source for step in instructions("build", "COPY") for source in step.split()[:-1] if not source.startswith("--")
    ]
    for source in copied:
        assert list(context_files(ROOT / source)), f"COPY {source} would find nothing in the build context"
    assert not ignored("servers/database/demo.db", rules)  # the shipped config's demo database


# ---- compose.yaml ----


def check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "check-jsonschema"), "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_compose_file_follows_the_compose_specification() -> None:
    done = check_jsonschema("vendor.compose-spec", ROOT / "compose.yaml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_runs_the_bot_with_postgres_and_redis_and_offers_model_and_webhook_profiles() -> None:
    compose = load_yaml(ROOT / "compose.yaml")
    services = compose["services"]
    bot = services["bot"]
    assert bot["env_file"] == ".env"
    assert {name: bot["depends_on"][name]["condition"] for name in ("postgres", "redis")} == {
        "postgres": "service_healthy",
        "redis": "service_healthy",
    }
    assert bot["environment"]["DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert bot["environment"]["DATABASE_URL"].split("@")[1].startswith("postgres:5432/")
    assert bot["environment"]["REDIS_URL"].startswith("redis://redis:6379/")
    assert set(bot["environment"]) <= SETTING_NAMES  # a misspelt setting would be ignored silently
    for name in ("postgres", "redis"):
        assert "healthcheck" in services[name] and services[name]["volumes"], name
    # every named volume is declared, every bind mount names a file of the repository
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), source
            else:
                assert source in compose["volumes"], source
    profiles = {name: service.get("profiles", []) for name, service in services.items()}
    assert profiles["bot"] == profiles["postgres"] == profiles["redis"] == []
    assert profiles["ollama"] == ["ollama"] and profiles["vllm"] == ["vllm"] and profiles["caddy"] == ["webhook"]
    devices = services["vllm"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert "--tool-call-parser" in services["vllm"]["command"]  # what gpt-oss needs on vLLM (README, Models)
    assert {port.split(":")[-1] for port in services["caddy"]["ports"]} == {"80", "443"}
    caddyfile = (ROOT / "deploy" / "caddy" / "Caddyfile").read_text()
    assert "reverse_proxy bot:8080" in caddyfile and "{$WEBHOOK_PATH}" in caddyfile


# ---- Kubernetes ----


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    paths = sorted(KUBERNETES.glob("*.yaml")) + sorted((KUBERNETES / "example").glob("*.yaml"))
    return [(path, document) for path in paths for document in yaml.safe_load_all(path.read_text()) if document]


def resource(kind: str) -> dict[str, Any]:
    [found] = [document for _, document in manifests() if document["kind"] == kind]
    return found


def test_kubernetes_manifests_are_valid_for_the_latest_kubernetes() -> None:
    kinds = set()
    for path, document in manifests():
        try:
            kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{path.name}: {error.message}")
        kinds.add(document["kind"])
    assert kinds == {"Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget"}


def test_the_deployment_probes_health_and_ready_and_runs_non_root_with_limits() -> None:
    deployment = resource("Deployment")
    pod = deployment["spec"]["template"]
    [container] = pod["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    env = {item["name"]: item["value"] for item in container["env"]}
    assert set(env) <= SETTING_NAMES
    assert ports["http"] == int(env["WEBHOOK_PORT"])
    assert (container["livenessProbe"]["httpGet"]["path"], container["readinessProbe"]["httpGet"]["path"]) == (
        "/health",
        "/ready",
    )
    assert container["livenessProbe"]["httpGet"]["port"] == container["readinessProbe"]["httpGet"]["port"] == "http"
    assert set(container["resources"]["requests"]) == set(container["resources"]["limits"]) == {"cpu", "memory"}
    security = pod["spec"]["securityContext"]
    image_user = instructions(final_stage(), "USER")[-1].split(":")[0]
    assert security["runAsNonRoot"] is True and str(security["runAsUser"]) == image_user
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # several replicas need a webhook (one poller per token) and PostgreSQL and Redis from the Secret
    assert deployment["spec"]["replicas"] > 1 and env["TELEGRAM_WEBHOOK_URL"].startswith("https://")
    secret = resource("Secret")
    assert container["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    assert {"TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET", "DATABASE_URL", "REDIS_URL"} <= set(secret["stringData"])
    assert set(secret["stringData"]) <= SETTING_NAMES
    assert secret["stringData"]["DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert "replace" in secret["stringData"]["TELEGRAM_BOT_TOKEN"]  # a placeholder, not a token
    # the data volume is where the image keeps its data, and the config lands where the bot reads it
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    assert mounts["data"]["mountPath"] == env["DATA_DIR"] == env_values("slim")["DATA_DIR"]
    workdir = instructions("build", "WORKDIR")[-1]
    assert mounts["config"]["mountPath"] == f"{workdir}/mcp_servers.json"


def test_service_and_disruption_budget_select_the_deployments_pods() -> None:
    labels = resource("Deployment")["spec"]["template"]["metadata"]["labels"]
    service = resource("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"]
    budget = resource("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["minAvailable"] < resource("Deployment")["spec"]["replicas"]  # a drain can proceed


def test_the_configmap_holds_the_shipped_mcp_servers_json() -> None:
    configmap = resource("ConfigMap")
    assert json.loads(configmap["data"]["mcp_servers.json"]) == json.loads((ROOT / "mcp_servers.json").read_text())
    [volume] = [v for v in resource("Deployment")["spec"]["template"]["spec"]["volumes"] if "configMap" in v]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]


# ---- GitHub Actions ----


def test_the_ci_workflow_is_valid_and_runs_ci_run_with_the_services_the_tests_expect() -> None:
    path = ROOT / ".github" / "workflows" / "ci.yml"
    done = check_jsonschema("vendor.github-workflows", path)
    assert done.returncode == 0, done.stdout + done.stderr
    [job] = load_yaml(path)["jobs"].values()
    assert any(step.get("run") == "bash .ci/run" for step in job["steps"])
    postgres, redis = job["services"]["postgres"], job["services"]["redis"]
    expected = urlparse(job["env"]["MCPBOT_TEST_POSTGRES_URL"])
    assert urlparse(POSTGRES_URL)._replace(scheme="") == expected._replace(scheme="")  # tests/conftest.py's default
    assert (postgres["env"]["POSTGRES_USER"], postgres["env"]["POSTGRES_DB"]) == (expected.username, expected.path[1:])
    assert postgres["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"  # throw-away roles log in without passwords
    assert f"{expected.port}:5432" in postgres["ports"]
    redis_url = urlparse(job["env"]["MCPBOT_TEST_REDIS_URL"])
    assert (redis_url.hostname, f"{redis_url.port}:6379" in redis["ports"]) == ("127.0.0.1", True)
    assert "--health-cmd" in postgres["options"] and "--health-cmd" in redis["options"]


# ---- systemd ----


def test_the_systemd_unit_passes_systemd_analyze_verify_for_this_checkout(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = (ROOT / "deploy" / "systemd" / "mcpbot.service").read_text()
    assert "ExecStart=/opt/mcpbot/.venv/bin/mcpbot run" in unit
    assert "KillMode=mixed" in unit  # SIGTERM reaches the bot alone; it stops its MCP servers itself
    assert "RestartPreventExitStatus=2" in unit  # a revoked token is not retried forever
    here = unit.replace("/opt/mcpbot/.venv/bin", str(VENV_BIN)).replace("/opt/mcpbot", str(ROOT))
    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    here = re.sub(r"(?m)^User=.*$", f"User={user}", re.sub(r"(?m)^Group=.*$", f"Group={group}", here))
    (tmp_path / "mcpbot.service").write_text(here)
    done = subprocess.run(
        [analyze, "verify", str(tmp_path / "mcpbot.service")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "mcpbot.service" not in done.stderr, done.stderr  # unknown keys are only warned about
