"""`ansible`: run a playbook, or one module, against targets through ansible-runner.

    # executor.yaml
    plugin_settings:
      ansible:
        project_dir: /etc/vigil/ansible      # playbooks live here (a playbook param is a path inside it)
        inventory: /etc/vigil/ansible/hosts  # the hosts it may reach; targets are chosen among them
        playbooks: [site.yml, repair.yml]    # optional allowlist (default: any file in project_dir)
        modules: [ping, setup, service]      # modules a `module` action may run (default: ping, setup)
        env: {ANSIBLE_PRIVATE_KEY_FILE: /run/secrets/ssh-key, ANSIBLE_BECOME_PASSWORD: "${env:BECOME_PW}"}
        forks: 5

    # a rule or runbook step
    - ansible: {playbook: site.yml, limit: "{{ member.host }}", extra_vars: {version: "42"}, tags: [web]}
    - ansible: {module: service, args: {name: nginx, state: restarted}, hosts: "web*"}

Params: playbook (path relative to project_dir) or module (+ args: an object or a k=v string),
limit/hosts (a pattern over the inventory; default the action's target), extra_vars (object),
tags, skip_tags, check (bool: check mode). Nothing from params runs as a command: the playbook must
be a file of project_dir (and of `playbooks`, when listed), the module one of `modules`, and only
inventory hosts are reachable (a pattern selects among them). Credentials come from the env (or
files) named in settings, never from params.

The result's output starts with the outcome and the counts (ok, changed, failed, unreachable,
skipped) summed over hosts, then the PLAY RECAP, then the end of ansible's output. A run whose
hosts failed or were unreachable FAILS (retried only when every problem was an unreachable host);
one that ran past the attempt's time limit is stopped by ansible-runner and TIMED_OUT.
Needs the optional ansible packages (`pip install vigil[ansible]`: ansible-core, ansible-runner).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.config import ConfigError, resolve_secret_refs
from app.executor.plugin import ActionCall, ActionFailed, ActionRejected, ActionTimedOut, action
from app.executor.plugins.params import check_keys, get_param

__all__ = ["AnsibleSettings", "ansible_action", "summarize"]

_PARAMS = ("playbook", "module", "args", "limit", "hosts", "extra_vars", "tags", "skip_tags", "check")
_COUNTS = (("ok", "ok"), ("changed", "changed"), ("failed", "failures"), ("unreachable", "dark"),
           ("skipped", "skipped"))


class AnsibleSettings(BaseModel):
    """executor.yaml plugin_settings.ansible (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    project_dir: Path
    inventory: Path | None = None
    playbooks: list[str] | None = None
    modules: list[str] = Field(default_factory=lambda: ["ping", "setup"])
    env: dict[str, str] = Field(default_factory=dict)
    forks: int = Field(5, ge=1, le=500)

    @field_validator("env")
    @classmethod
    def _secrets(cls, v: dict[str, str]) -> dict[str, str]:
        try:
            return {k: str(resolve_secret_refs(value, where=f"ansible.env.{k}")) for k, value in v.items()}
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


def _settings(call: ActionCall) -> AnsibleSettings:
    try:
        settings = AnsibleSettings.model_validate(call.settings)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ActionRejected(f"ansible: executor.yaml plugin_settings.ansible: {problems}") from None
    if not settings.project_dir.is_dir():
        raise ActionRejected(f"ansible: project_dir {settings.project_dir} is not a directory")
    return settings


def _playbook(settings: AnsibleSettings, name: str) -> str:
    root = settings.project_dir.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise ActionRejected(f"ansible: playbook {name!r} is not a file of {root}")
    relative = path.relative_to(root).as_posix()
    if settings.playbooks is not None and relative not in settings.playbooks:
        raise ActionRejected(f"ansible: playbook {relative!r} is not allowed (playbooks: "
                             f"{', '.join(settings.playbooks)})")
    return relative


def summarize(stats: dict[str, Any] | None) -> dict[str, int]:
    """Counts summed over hosts from ansible-runner's stats (ok, changed, failed, unreachable, skipped)."""
    stats = stats or {}
    return {name: sum(int(n) for n in (stats.get(key) or {}).values()) for name, key in _COUNTS}


def _recap(stdout: str) -> str:
    at = stdout.rfind("PLAY RECAP")
    return stdout[at:].strip() if at >= 0 else ""


def _run(call: ActionCall, settings: AnsibleSettings) -> tuple[str, Any]:
    import ansible_runner  # optional dependency: only needed when ansible actions run

    p = call.params
    check_keys(p, _PARAMS, plugin="ansible")
    if ("playbook" in p) == ("module" in p):
        raise ActionRejected("ansible: give a playbook or a module (one of them)")
    pattern = get_param(p, "limit", str, default=None, plugin="ansible") or \
        get_param(p, "hosts", str, default=None, plugin="ansible") or call.action.target
    extra_vars = get_param(p, "extra_vars", dict, default={}, plugin="ansible")
    # ansible-playbook from the interpreter's own environment first (the venv vigil runs in)
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    kwargs: dict[str, Any] = {"quiet": True, "forks": settings.forks, "timeout": max(1, int(call.timeout_s)),
                              "envvars": {"ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_NOCOLOR": "1",
                                          "PATH": path, **settings.env},
                              "extravars": extra_vars or None}
    if settings.inventory is not None:
        kwargs["inventory"] = str(settings.inventory)
    cmdline: list[str] = []
    if p.get("check"):
        cmdline.append("--check")
    for key, flag in (("tags", "--tags"), ("skip_tags", "--skip-tags")):
        if key in p:
            value = p[key]
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, list) or not all(isinstance(n, str) and "," not in n for n in names):
                raise ActionRejected(f"ansible: {key} must be a tag name or a list of them")
            cmdline += [flag, ",".join(names)]
    if cmdline:
        kwargs["cmdline"] = " ".join(cmdline)
    if "playbook" in p:
        what = _playbook(settings, get_param(p, "playbook", str, plugin="ansible"))
        kwargs.update(playbook=what, project_dir=str(settings.project_dir.resolve()), limit=pattern)
    else:
        module = get_param(p, "module", str, plugin="ansible")
        if module not in settings.modules:
            raise ActionRejected(f"ansible: module {module!r} is not allowed (modules: {', '.join(settings.modules)})")
        args = p.get("args", "")
        if isinstance(args, dict):
            args = json.dumps(args)
        elif not isinstance(args, str):
            raise ActionRejected("ansible: args must be an object or a k=v string")
        what = f"module {module}"
        kwargs.update(module=module, module_args=args or None, host_pattern=pattern)
    private = tempfile.mkdtemp(prefix="vigil-ansible-")
    try:
        runner = ansible_runner.run(private_data_dir=private, **kwargs)
        stdout = runner.stdout.read() if runner.stdout is not None else ""
        return what, (runner.status, runner.rc, runner.stats, stdout)
    finally:
        shutil.rmtree(private, ignore_errors=True)


@action("ansible")
def ansible_action(call: ActionCall) -> str:
    """Run an ansible playbook or module through ansible-runner; counts and recap in the output."""
    settings = _settings(call)
    what, (status, rc, stats, stdout) = _run(call, settings)
    counts = summarize(stats)
    head = f"ansible {what}: {status} (rc {rc}): " + " ".join(f"{k}={v}" for k, v in counts.items())
    recap = _recap(stdout)
    room = max(0, call.config.max_output_bytes - len(head) - len(recap) - 8)
    tail = stdout[-room:] if room and not recap else ""
    output = "\n".join(part for part in (head, recap, tail) if part)
    if status == "timeout":
        raise ActionTimedOut(f"ansible {what}: stopped after {call.timeout_s:g}s", output=output)
    if status != "successful" or rc != 0:
        only_unreachable = counts["unreachable"] > 0 and counts["failed"] == 0
        raise ActionFailed(f"ansible {what}: {status} (rc {rc}): {counts['failed']} failed, "
                           f"{counts['unreachable']} unreachable", output=output, retryable=only_unreachable)
    return output
