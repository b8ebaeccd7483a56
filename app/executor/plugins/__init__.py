"""Built-in action plugins: print, fire_event, http, email, shell, ansible, salt (one module each).

Importing a plugin module registers its `@action` functions in `default_plugins`;
`load_builtin_plugins()` imports them all.
"""

from __future__ import annotations

import importlib

__all__ = ["BUILTIN_PLUGIN_MODULES", "load_builtin_plugins"]

BUILTIN_PLUGIN_MODULES = (
    "app.executor.plugins.printer",
    "app.executor.plugins.fire_event",
    "app.executor.plugins.http",
    "app.executor.plugins.smtp",
    "app.executor.plugins.shell",
    "app.executor.plugins.ansible",
    "app.executor.plugins.salt",
)


def load_builtin_plugins() -> None:
    """Register the built-in plugins in `app.executor.plugin.default_plugins`."""
    for module in BUILTIN_PLUGIN_MODULES:
        importlib.import_module(module)
