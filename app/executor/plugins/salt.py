"""`salt`: call salt-api (rest_cherrypy or rest_tornado) to run a state or function on targets.

    # executor.yaml
    plugin_settings:
      salt:
        url: https://salt.example.com:8000          # salt-api; reached through the outbound allowlist
        username: vigil
        password: ${file:/run/secrets/salt-api}      # or ${env:SALT_API_PASSWORD}; never inline
        eauth: pam                                   # or sharedsecret, ldap, ...
        functions: [test.ping, state.apply, state.sls, state.highstate, grains.items]  # what actions may call
    outbound:
      allow:
        - {hosts: [salt.example.com], schemes: [https], ports: [8000]}

    # a rule or runbook step
    - salt: {fun: state.apply, arg: [nginx], tgt: "web*"}
    - salt: {fun: state.highstate, tgt: "{{ member.host }}", kwarg: {test: true}}

Params: fun (one of `functions`), tgt (default: the action's target), tgt_type (glob, list, grain,
pcre, compound; default glob), arg (list), kwarg (object), timeout (seconds the master waits for
minions). One POST to salt-api's /run with the credentials from settings; every request goes
through the executor's outbound allowlist (app.executor.safe_http). Functions that run commands
(cmd.*) are not allowed unless listed: nothing from an event is run as a command.

The result holds one line per minion (states ok/changed/failed, or the function's answer) and the
return as JSON. It FAILS when no minion answered, or any minion's state failed or returned an
error; a refused login is not retried, a salt-api that does not answer (or answers 5xx) is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from app.config import ConfigError, resolve_secret_refs
from app.executor.plugin import ActionCall, ActionFailed, ActionRejected, action
from app.executor.plugins.params import check_keys, get_param
from app.executor.safe_http import request

__all__ = ["SaltSettings", "minion_summary", "salt_action"]

_PARAMS = ("fun", "tgt", "tgt_type", "arg", "kwarg", "timeout")
_TGT_TYPES = ("glob", "list", "grain", "pcre", "compound", "nodegroup", "pillar")
_BODY_LIMIT = 4 * 1024 * 1024


class SaltSettings(BaseModel):
    """executor.yaml plugin_settings.salt (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    url: str
    username: str
    password: SecretStr
    eauth: str = "pam"
    functions: list[str] = Field(default_factory=lambda: ["test.ping", "state.apply", "state.sls",
                                                          "state.highstate", "grains.items"])
    timeout_s: float = Field(60.0, alias="timeout", gt=0, le=3600)

    @field_validator("username", "password", mode="before")
    @classmethod
    def _secret(cls, v: Any) -> Any:
        try:
            return resolve_secret_refs(v, where="salt credentials")
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.lower().startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return v.rstrip("/")


def _settings(call: ActionCall) -> SaltSettings:
    try:
        return SaltSettings.model_validate(call.settings)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ActionRejected(f"salt: executor.yaml plugin_settings.salt: {problems}") from None


def minion_summary(value: Any) -> tuple[bool, str]:
    """(succeeded, one line) for one minion's return: state runs are counted, other answers shown."""
    if isinstance(value, Mapping) and value and all(isinstance(v, Mapping) and "result" in v for v in value.values()):
        ok = sum(1 for v in value.values() if v.get("result") is True)
        failed = sum(1 for v in value.values() if v.get("result") is False)
        changed = sum(1 for v in value.values() if v.get("changes"))
        return failed == 0, f"{ok} ok, {changed} changed, {failed} failed"
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return False, "error: " + "; ".join(value)[:300]  # e.g. "No matching sls found for 'x' in env 'base'"
    if value is False:
        return False, "False"
    if isinstance(value, str) and value.startswith(("ERROR", "'")) and "is not available" in value:
        return False, value[:300]
    text = json.dumps(value, default=str)
    return True, text if len(text) <= 200 else text[:197] + "..."


def _lowstate(call: ActionCall, settings: SaltSettings) -> dict[str, Any]:
    p = call.params
    check_keys(p, _PARAMS, plugin="salt")
    fun = get_param(p, "fun", str, plugin="salt")
    if fun not in settings.functions:
        raise ActionRejected(f"salt: function {fun!r} is not allowed (functions: {', '.join(settings.functions)})")
    tgt_type = get_param(p, "tgt_type", str, default="glob", plugin="salt")
    if tgt_type not in _TGT_TYPES:
        raise ActionRejected(f"salt: tgt_type {tgt_type!r} is not one of {', '.join(_TGT_TYPES)}")
    arg = get_param(p, "arg", list, default=[], plugin="salt")
    kwarg = get_param(p, "kwarg", dict, default={}, plugin="salt")
    wait_s = float(get_param(p, "timeout", (int, float), default=min(settings.timeout_s, call.timeout_s),
                             plugin="salt"))
    return {"client": "local", "tgt": get_param(p, "tgt", str, default=call.action.target, plugin="salt"),
            "tgt_type": tgt_type, "fun": fun, "arg": arg, "kwarg": kwarg, "timeout": max(1, int(wait_s)),
            "username": settings.username, "password": settings.password.get_secret_value(),
            "eauth": settings.eauth}


@action("salt")
async def salt_action(call: ActionCall) -> str:
    """Run a salt state or function on targets through salt-api; one line per minion."""
    settings = _settings(call)
    low = _lowstate(call, settings)
    answer = await request(call.egress, "POST", f"{settings.url}/run", json=[low],
                           headers={"Accept": "application/json"}, timeout_s=call.timeout_s,
                           max_redirects=0, body_limit=_BODY_LIMIT)
    what = f"salt {low['fun']} on {low['tgt']}"
    if answer.status in (401, 403):
        raise ActionFailed(f"{what}: salt-api refused the credentials (HTTP {answer.status}): check "
                           f"plugin_settings.salt and the master's external_auth", retryable=False)
    if answer.status != 200:
        raise ActionFailed(f"{what}: salt-api answered HTTP {answer.status} {answer.reason}", output=answer.body[:2000],
                           retryable=answer.status >= 500 or answer.status == 429)
    try:
        returned = json.loads(answer.body)["return"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        raise ActionFailed(f"{what}: salt-api did not answer {{\"return\": [...]}}", output=answer.body[:2000]) \
            from None
    if not isinstance(returned, Mapping) or not returned:
        raise ActionFailed(f"{what}: no minion answered (none matched, or none within {low['timeout']}s)",
                           retryable=False)
    lines, failed = [], []
    for minion in sorted(returned):
        ok, line = minion_summary(returned[minion])
        lines.append(f"{minion}: {'ok' if ok else 'FAILED'}: {line}")
        if not ok:
            failed.append(minion)
    head = f"{what}: {len(returned)} minion(s), {len(failed)} failed"
    output = "\n".join([head, *lines, json.dumps(returned, default=str, separators=(",", ":"))])
    if failed:
        raise ActionFailed(f"{what}: failed on {', '.join(failed)}", output=output, retryable=False)
    return output
