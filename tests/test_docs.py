"""The README and the deployment files stay true: every setting and every command documented,
the Docker healthcheck and the systemd unit run commands that exist."""

from __future__ import annotations

import configparser
import json
import re
import shlex
from pathlib import Path

from newsletter.cli import app
from newsletter.settings import setting_names

REPO_ROOT = Path(__file__).resolve().parents[1]
README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def _commands() -> list[str]:
    import typer.main

    group = typer.main.get_command(app)
    return sorted(group.commands)  # type: ignore[attr-defined]


def test_every_setting_is_in_the_readme() -> None:
    missing = [name for name in setting_names() if name not in README]
    assert missing == []


def test_every_command_is_in_the_readme() -> None:
    missing = [name for name in _commands() if f"`newsletter {name}" not in README]
    assert missing == []


def test_the_docker_healthcheck_asks_status_health() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
    match = re.search(r"^HEALTHCHECK .*?CMD (\[.*?\])\s*$", dockerfile, re.MULTILINE | re.DOTALL)
    assert match, "no HEALTHCHECK with a CMD"
    assert json.loads(match.group(1)) == ["newsletter", "status", "--health"]  # exec form is JSON
    assert "status" in _commands()


def test_the_systemd_unit_runs_the_service_hardened_and_restarts_it() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    unit.read(REPO_ROOT / "deploy" / "newsletter.service")
    service = unit["Service"]
    command = shlex.split(service["ExecStart"])
    assert Path(command[0]).name == "newsletter" and command[1:] == ["run"]
    assert service["Restart"] == "on-failure"
    assert service["ProtectSystem"] == "strict" and service["NoNewPrivileges"] == "yes"
    assert service["User"] and service["EnvironmentFile"]
    assert service["WorkingDirectory"] == f"/var/lib/{service['StateDirectory']}"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_the_example_environment_file_names_only_real_settings() -> None:
    names = setting_names()
    lines = (REPO_ROOT / "deploy" / "newsletter.env.example").read_text(encoding="utf-8").splitlines()
    used = [line.split("=", 1)[0] for line in lines if line.strip() and not line.startswith("#")]
    assert used and [name for name in used if name not in names] == []


def test_the_worker_unit_runs_a_worker_hardened_and_restarts_it() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(REPO_ROOT / "deploy" / "newsletter-worker.service")
    service = unit["Service"]
    command = shlex.split(service["ExecStart"])
    assert Path(command[0]).name == "newsletter" and command[1:] == ["worker"]
    assert "worker" in _commands()
    assert service["Restart"] == "on-failure" and service["KillSignal"] == "SIGTERM"
    assert service["ProtectSystem"] == "strict" and service["NoNewPrivileges"] == "yes"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
