"""The container, without a Docker engine: the Dockerfile and compose files are parsed and
checked, and the image's entry command runs as an unprivileged user on a read-only
installation, answering /healthz and /readyz and writing its evidence to the data volume.

How the run maps onto the image: the package is installed with ``pip --target`` into a
temporary ``/opt/cxguard`` (the image's virtualenv; here the shared venv supplies the
dependencies, so ``PYTHONPATH`` names it), every absolute path of the Dockerfile is re-rooted
under a temporary folder, the ``ENV`` lines are applied, and ``CMD`` and ``HEALTHCHECK`` run
under ``setpriv`` as uid/gid 65534 with the ``WORKDIR`` as working directory."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from support_auth import API_KEY, SECRET, SECRET_B64
from support_http import free_port

from cxguard.audio.files import read_audio
from cxguard.evidence.ledger import EvidenceLedger
from cxguard.runtime.demo import demo_audio
from cxguard.runtime.simulate_audiohook import AudioHookSimulation, simulate_audiohook_call

ROOT = Path(__file__).resolve().parents[1]
NOBODY = 65534


# --------------------------------------------------------------------------- Dockerfile


@dataclass
class Stage:
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, name: str) -> list[str]:
        return [args for op, args in self.instructions if op == name]

    def last(self, name: str) -> str:
        found = self.all(name)
        assert found, f"no {name} in the final stage"
        return found[-1]

    def env(self, path: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for args in self.all("ENV"):
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                out[key] = value.replace("$PATH", path)
        return out


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(ARG defaults before the first FROM, stages) of a Dockerfile."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    )
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in joined.splitlines():
        if not line.strip():
            continue
        op, _, rest = line.strip().partition(" ")
        op, rest = op.upper(), " ".join(rest.split())
        if op == "FROM":
            base = rest.split(" AS ")[0]
            for key, value in args.items():
                base = base.replace(f"${{{key}}}", value)
            stages.append(Stage(base))
        elif not stages:
            assert op == "ARG", op
            key, _, value = rest.partition("=")
            args[key] = value
        else:
            stages[-1].instructions.append((op, rest))
    return args, stages


@pytest.fixture(scope="module")
def image() -> Stage:
    _args, stages = parse_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8"))
    assert len(stages) == 2
    return stages[-1]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def test_dockerfile_runs_unprivileged_with_a_data_volume_and_a_healthcheck(image: Stage) -> None:
    args, _ = parse_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8"))
    assert re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+", args["BASE"])
    user = image.last("USER")
    assert user.split(":")[0] not in ("0", "root") and user.split(":")[0].isdigit()
    volume = json.loads(image.last("VOLUME"))
    workdir = image.last("WORKDIR")
    assert volume == ["/var/lib/cxguard"] and workdir.startswith(volume[0])
    check = image.last("HEALTHCHECK")
    assert "/healthz" in check and "--start-period=" in check
    cmd = exec_form(image.last("CMD"))
    assert cmd[:2] == ["cxguard", "serve"]
    config = cmd[cmd.index("--config") + 1]
    copied = {shlex.split(a)[-1]: shlex.split(a)[0] for a in image.all("COPY") if "--from" not in a}
    source = ROOT / copied[config]
    settings = yaml.safe_load(source.read_text(encoding="utf-8"))
    # The evidence goes to the volume, by an absolute path.
    assert settings["evidence_url"].startswith(f"sqlite:///{volume[0]}/")
    assert settings["host"] == "0.0.0.0"
    # The data directory is created for the user it runs as.
    assert any(f"-o {user.split(':')[0]}" in run and volume[0] in run for run in image.all("RUN"))


# --------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_compose_has_the_sidecar_postgres_and_redis_with_healthchecks(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert set(services) == {"cxguard", "asr-worker", "postgres", "redis"}
    assert services["asr-worker"]["profiles"] == ["pool"]  # only with --profile pool
    for name, service in services.items():
        assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
        assert service.get("restart") == "unless-stopped", name
    guard = services["cxguard"]
    assert guard["user"].split(":")[0] not in ("0", "root")
    assert guard["read_only"] is True and guard["cap_drop"] == ["ALL"]
    assert any(v.startswith("cxguard-data:/var/lib/cxguard") for v in guard["volumes"])
    assert {n: d["condition"] for n, d in guard["depends_on"].items()} == {
        "postgres": "service_healthy",
        "redis": "service_healthy",
    }
    assert "/healthz" in " ".join(guard["healthcheck"]["test"])
    assert any("/var/lib/postgresql/data" in v for v in services["postgres"]["volumes"])
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    assert set(compose["volumes"]) >= {"cxguard-data", "postgres-data", "redis-data"}
    assert compose["networks"]["backend"]["internal"] is True
    assert "ports" not in services["postgres"] and "ports" not in services["redis"]


def test_compose_secrets_are_declared_created_and_read(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    declared = set(compose["secrets"])
    used = {s for svc in compose["services"].values() for s in svc.get("secrets", [])}
    assert used == declared
    config = (ROOT / "deploy" / "cxguard.yaml").read_text(encoding="utf-8")
    read = set(re.findall(r"/run/secrets/([a-z_]+)", config))
    assert read <= set(compose["services"]["cxguard"]["secrets"])
    assert "POSTGRES_PASSWORD_FILE" in compose["services"]["postgres"]["environment"]
    out = tmp_path / "secrets"
    subprocess.run(["sh", str(ROOT / "deploy" / "make-secrets.sh"), str(out)], check=True)
    made = {p.name for p in out.iterdir()}
    assert made == {Path(s["file"]).name for s in compose["secrets"].values()}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in out.iterdir())
    password = (out / "postgres_password").read_text().strip()
    assert len(password) >= 30 and password in (out / "evidence_url").read_text()
    # The compose config loads with these secrets (paths re-rooted).
    from cxguard.runtime.settings_loader import load

    path = tmp_path / "cxguard.yaml"
    path.write_text(config.replace("/run/secrets/", f"{out}/"), encoding="utf-8")
    settings = load(path, None, {})
    assert settings.evidence_url.startswith("postgresql+psycopg://cxguard:")
    assert settings.redis_url and settings.metrics_token and settings.tenants[0].audiohook_api_key


# --------------------------------------------------------------------------- the entry command


@dataclass
class Installed:
    root: Path
    env: dict[str, str]
    workdir: Path
    data: Path
    cmd: list[str]
    healthcheck: list[str]

    def at(self, path: str) -> Path:
        return self.root / path.lstrip("/")


def _reroot(value: str, root: Path) -> str:
    return re.sub(r"(?<![\w.])/(opt|etc|var)/", lambda m: f"{root}/{m.group(1)}/", value)


@pytest.fixture(scope="module")
def installed(image: Stage) -> Iterator[Installed]:
    root = Path(tempfile.mkdtemp(prefix="cxguard-image-", dir="/tmp"))
    try:
        root.chmod(0o755)
        src = root / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, src / name)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for name in ("cxguard", "models"):
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        venv = "/opt/cxguard"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "--no-compile",
                "--target",
                str(root / venv.lstrip("/")),
                str(src),
            ],
            check=True,
            capture_output=True,
        )
        # The image's venv has a ``python`` (the HEALTHCHECK runs it); --target makes none.
        (root / venv.lstrip("/") / "bin" / "python").symlink_to(sys.executable)
        for args in image.all("COPY"):
            if "--from" in args:
                continue
            source, dest = shlex.split(args)
            target = root / dest.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            # A config file's absolute paths are the image's: re-root them too.
            text = (ROOT / source).read_text(encoding="utf-8")
            target.write_text(_reroot(text, root), encoding="utf-8")
        volume = json.loads(image.last("VOLUME"))[0]
        data = root / volume.lstrip("/")
        data.mkdir(parents=True)
        os.chown(data, NOBODY, NOBODY)
        data.chmod(0o750)
        for top in (root / "opt", root / "etc", src):
            subprocess.run(["chmod", "-R", "a-w", str(top)], check=True)
        # The base image's PATH: system directories only.
        env = {k: _reroot(v, root) for k, v in image.env("/usr/local/bin:/usr/bin:/bin").items()}
        env["PYTHONPATH"] = str(root / venv.lstrip("/"))  # the image's venv makes this implicit
        health = image.last("HEALTHCHECK")
        yield Installed(
            root,
            env,
            root / image.last("WORKDIR").lstrip("/"),
            data,
            [_reroot(a, root) for a in exec_form(image.last("CMD"))],
            exec_form(health[health.index("CMD ") + 4 :]),
        )
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(root)], check=False)
        shutil.rmtree(root, ignore_errors=True)


def as_nobody(cmd: list[str]) -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", *cmd]


def listing(top: Path) -> set[tuple[str, int]]:
    return {(str(p), p.stat().st_size) for p in top.rglob("*")}


def short_call(tmp: Path, seconds: float = 12.0) -> tuple[Path, Path]:
    out = []
    for source in demo_audio():
        pcm = read_audio(source, 8000)[: int(seconds * 8000)]
        path = tmp / source.name
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(pcm.tobytes())
        out.append(path)
    return out[0], out[1]


def test_without_credentials_the_image_refuses_to_start(installed: Installed) -> None:
    done = subprocess.run(
        as_nobody([*installed.cmd, "--port", str(free_port())]),
        cwd=installed.workdir,
        env=installed.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "refusing to listen on 0.0.0.0" in done.stderr and "--insecure" in done.stderr
    assert list(installed.data.iterdir()) == []


@pytest.mark.slow
def test_the_entry_command_serves_as_nobody_on_a_read_only_install(
    installed: Installed, tmp_path: Path
) -> None:
    port = free_port()
    env = installed.env | {
        "CXGUARD_AUDIOHOOK_API_KEY": API_KEY,
        "CXGUARD_AUDIOHOOK_CLIENT_SECRET": SECRET_B64,
    }
    before = listing(installed.root / "opt") | listing(installed.root / "etc")
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            as_nobody([*installed.cmd, "--port", str(port)]),
            cwd=installed.workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        healthcheck = as_nobody([a.replace(":8765/", f":{port}/") for a in installed.healthcheck])
        deadline = time.monotonic() + 240
        while (check := subprocess.run(healthcheck, env=env, capture_output=True)).returncode:
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, check.stderr.decode(errors="replace")[-2000:]
            time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as reply:
            assert reply.status == 200 and json.loads(reply.read())["ready"] is True
        agent, customer = short_call(tmp_path)
        result = asyncio.run(
            simulate_audiohook_call(
                f"ws://127.0.0.1:{port}/audiohook",
                agent,
                customer,
                AudioHookSimulation(fast=True, api_key=API_KEY, client_secret=SECRET),
            )
        )
        assert [m["type"] for m in result.server_messages] == ["opened", "closed"]
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(120)
    assert rc == 0, log.read_text(errors="replace")
    assert "Traceback" not in log.read_text(errors="replace")
    # Evidence in the volume, written by the unprivileged user; the installation untouched.
    files = list(installed.data.iterdir())
    assert files and all(p.stat().st_uid == NOBODY for p in files)
    assert listing(installed.root / "opt") | listing(installed.root / "etc") == before
    ledger = EvidenceLedger(f"sqlite:///{installed.data / 'evidence.db'}")
    try:
        rows = list(ledger.export(call_id=result.conversation_id))
    finally:
        ledger.close()
    assert rows and {r["tenant"] for r in rows} == {"default"}
