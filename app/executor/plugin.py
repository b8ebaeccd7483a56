"""The action plugin API: `@action("name")` functions and what they receive and may raise.

    from app.executor.plugin import ActionCall, ActionFailed, ActionRejected, action

    @action("pagerduty", idempotent=True)           # idempotent: safe to run again after a crash
    async def page(call: ActionCall) -> str:         # or a plain `def` (run in a worker thread)
        key = call.params.get("routing_key")
        if not isinstance(key, str):
            raise ActionRejected("params.routing_key must be a string")   # REJECTED, never retried
        ...                                           # raise ActionFailed(...) to fail (retried)
        return "paged"                                # the result's output (truncated)

A plugin runs once per attempt. It must not assume it runs in the executor's main thread, and it
gets its inputs only from `call` (params from the rule, settings from executor.yaml): nothing in
params is ever executed as code or passed to a shell. A plugin that connects anywhere asks
`call.egress` first (HTTP: `app.executor.safe_http.request(call.egress, ...)`), so it reaches only
what executor.yaml's `outbound` allowlist allows.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app.model.events import Action

if TYPE_CHECKING:
    from app.executor.config import ExecutorConfig
    from app.executor.egress import EgressGuard

__all__ = [
    "ActionCall",
    "ActionFailed",
    "ActionRejected",
    "ActionTimedOut",
    "PendingSend",
    "PluginFn",
    "PluginRegistry",
    "PluginSpec",
    "action",
    "default_plugins",
]

log = logging.getLogger(__name__)

#: What a plugin function looks like: `fn(call) -> output` (sync or async).
PluginFn = Callable[["ActionCall"], "Awaitable[Any] | Any"]


class ActionRejected(Exception):
    """The action's params are invalid for this plugin: reported REJECTED, never retried.

    Raise it before any side effect."""


class ActionFailed(Exception):
    """The attempt failed. `retryable=False` for failures a retry cannot fix (e.g. HTTP 404)."""

    def __init__(self, message: str, *, output: str = "", retryable: bool = True) -> None:
        super().__init__(message)
        self.output = output
        self.retryable = retryable


class ActionTimedOut(Exception):
    """The plugin enforced its own time limit (e.g. killed a command); `output` is what it got."""

    def __init__(self, message: str, *, output: str = "") -> None:
        super().__init__(message)
        self.output = output


@dataclass(frozen=True, slots=True)
class PendingSend:
    """A record a plugin asked to produce, held until its attempt succeeds."""

    topic: str
    key: str | None
    value: Any
    schema: str | None
    headers: dict[str, str] | None


@dataclass
class ActionCall:
    """One attempt of one action, as a plugin sees it."""

    action: Action
    #: the action's params, parsed from its JSON object string
    params: dict[str, Any]
    #: 1 for the first attempt
    attempt: int
    #: time limit of this attempt in seconds (the executor also enforces it from outside)
    timeout_s: float
    config: ExecutorConfig
    #: this plugin's section of `plugin_settings` in executor.yaml ({} when absent)
    settings: dict[str, Any] = field(default_factory=dict)
    sends: list[PendingSend] = field(default_factory=list)
    #: the outbound guard: every connection a plugin makes goes to a destination it vetted
    #: (`await call.egress.vet(scheme, host, port)`; HTTP: app.executor.safe_http.request)
    egress: EgressGuard = None  # type: ignore[assignment]  # built from config when not given

    def __post_init__(self) -> None:
        if self.egress is None:
            from app.executor.egress import EgressGuard  # here: egress imports this module

            self.egress = EgressGuard(self.config.outbound)

    def send(self, topic: str, key: str | None, value: Any, *, schema: str | None = None,
             headers: dict[str, str] | None = None) -> None:
        """Produce a record if (and only if) this attempt succeeds: it is published in the same
        commit (a Kafka transaction under exactly-once) as the action's result."""
        self.sends.append(PendingSend(topic, key, value, schema, headers))


@dataclass(frozen=True)
class PluginSpec:
    """A registered plugin: its name (the action `type`), function and whether re-running it is safe."""

    name: str
    fn: PluginFn
    #: True when running the same action id twice has the effect of running it once (the
    #: executor then re-runs an action interrupted by a crash instead of reporting it)
    idempotent: bool = False
    help: str = ""

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    async def run(self, call: ActionCall) -> Any:
        """Run one attempt; blocking (sync) plugins run in a thread so other actions go on."""
        if self.is_async:
            return await self.fn(call)
        return await asyncio.to_thread(self.fn, call)


class PluginRegistry:
    """Plugins by name; registering a name again replaces the earlier plugin (with a warning)."""

    def __init__(self) -> None:
        self._plugins: dict[str, PluginSpec] = {}

    def add(self, spec: PluginSpec) -> PluginSpec:
        """Register `spec` under its name."""
        old = self._plugins.get(spec.name)
        if old is not None and old.fn is not spec.fn:
            log.warning("action plugin %r registered again by %s; replacing %s", spec.name,
                        getattr(spec.fn, "__qualname__", spec.fn), getattr(old.fn, "__qualname__", old.fn))
        self._plugins[spec.name] = spec
        return spec

    def get(self, name: str) -> PluginSpec | None:
        """The plugin named `name`, or None."""
        return self._plugins.get(name)

    def names(self) -> list[str]:
        """Registered plugin names, sorted."""
        return sorted(self._plugins)

    def copy(self) -> PluginRegistry:
        """An independent registry with the same plugins (tests add their own on top)."""
        other = PluginRegistry()
        other._plugins = dict(self._plugins)
        return other


#: Where `@action` registers by default; the executor runs these (built-ins + --plugins modules).
default_plugins = PluginRegistry()


def action(name: str, *, idempotent: bool = False,
           registry: PluginRegistry | None = None) -> Callable[[PluginFn], PluginFn]:
    """Declare an action plugin for actions of type `name`; returns the function unchanged.

    idempotent: declare True only if running the same action twice is harmless (e.g. the
    receiver deduplicates by action id); then an action interrupted by a crash is run again
    rather than reported as interrupted.
    """
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"action plugin name {name!r}: use letters, digits, '-' and '_'")

    def wrap(fn: PluginFn) -> PluginFn:
        help_text = (inspect.getdoc(fn) or "").split("\n")[0]
        (registry or default_plugins).add(PluginSpec(name=name, fn=fn, idempotent=idempotent, help=help_text))
        return fn

    return wrap
