"""`shell`: run an allowlisted command by name. Despite the name, never through a shell.

    # executor.yaml
    commands:
      restart-nginx: [systemctl, restart, nginx]
      restart: {argv: [systemctl, restart, "{service}"], timeout: 60s}

    # action params
    {"command": "restart", "args": {"service": "nginx"}}

Only commands of the executor's own config run; a rule chooses one by name and may fill only the
slots the command declares (`{service}`), with plain strings, each becoming exactly one argv
element. The argv list goes to execve directly: `"nginx; rm -rf /"` is passed literally, as one
argument, and nothing interprets it. Values starting with '-' are refused unless the command sets
`allow_option_values: true`. The command gets a minimal environment (PATH, LANG, the command's
`env`, VIGIL_ACTION_ID, VIGIL_TRACE_ID), its own process group (killed whole on timeout), no stdin;
stdout and stderr are captured together, keeping the first `max_output_bytes`.

Not idempotent: an action interrupted by an executor crash is reported, not run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from app.executor.argv import ArgvError
from app.executor.plugin import ActionCall, ActionFailed, ActionRejected, ActionTimedOut, action
from app.executor.plugins.params import check_keys, get_param

__all__ = ["shell_action"]

#: How long to wait for the output pipe to close after the command exited (a background child may
#: have inherited it) before giving up on the rest of the output.
_DRAIN_S = 2.0


class _Capture:
    """Reads a stream to its end, keeping only the first `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept = bytearray()
        self.dropped = 0

    async def read(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            room = self.limit - len(self.kept)
            self.kept += chunk[:room]
            self.dropped += max(0, len(chunk) - room)

    @property
    def text(self) -> str:
        text = self.kept.decode("utf-8", errors="replace")
        return text + (f"\n[... {self.dropped} bytes truncated]" if self.dropped else "")


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _argv(call: ActionCall) -> tuple[str, list[str], float, dict[str, str], str | None]:
    check_keys(call.params, ("command", "args"), plugin="shell")
    name = get_param(call.params, "command", str, plugin="shell")
    command = call.config.commands.get(name)
    if command is None:
        allowed = ", ".join(sorted(call.config.commands)) or "none configured"
        raise ActionRejected(f"shell: command {name!r} is not in this executor's allowlist ({allowed})")
    args = get_param(call.params, "args", dict, default={}, plugin="shell")
    try:
        argv = command.template.render(args, allow_option_values=command.allow_option_values)
    except ArgvError as exc:
        raise ActionRejected(f"shell: command {name!r}: {exc}") from None
    timeout_s = min(command.timeout_ms / 1000, call.timeout_s) if command.timeout_ms else call.timeout_s
    env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": os.environ.get("LANG", "C.UTF-8"),
           **command.env,
           "VIGIL_ACTION_ID": call.action.id, "VIGIL_TRACE_ID": call.action.trace_id or ""}
    return name, argv, timeout_s, env, str(command.cwd) if command.cwd else None


@action("shell")
async def shell_action(call: ActionCall) -> str:
    """Run an allowlisted command (argv list, no shell); non-zero exit fails the action."""
    name, argv, timeout_s, env, cwd = _argv(call)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
    except OSError as exc:  # missing program, not executable, bad cwd: a retry will not help
        raise ActionFailed(f"shell: command {name!r}: cannot start {argv[0]!r}: {exc.strerror or exc}",
                           retryable=False) from None
    assert proc.stdout is not None
    capture = _Capture(call.config.max_output_bytes)
    reader = asyncio.ensure_future(capture.read(proc.stdout))
    try:
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            _kill_group(proc)
            await proc.wait()
            timed_out = True
        else:
            timed_out = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reader), _DRAIN_S)
    finally:
        _kill_group(proc)  # also when the executor cancels this attempt
        reader.cancel()
    if timed_out:
        raise ActionTimedOut(f"shell: command {name!r} killed after {timeout_s:g}s", output=capture.text)
    code = proc.returncode
    if code != 0:
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        raise ActionFailed(f"shell: command {name!r}: {how}", output=capture.text)
    return capture.text
