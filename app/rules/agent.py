"""The built-in rules stage that `vigil worker` runs (see app/rules/stage.py for how it works).

Configuration comes from the environment and vigil.yaml, like every Vigil process:
    VIGIL_RULES_DIR (rules_dir)                 rule files, hot-reloaded (default ./rules)
    VIGIL_ACTION_SIGNING_KEY(_FILE)             HMAC key actions are signed with (app/rules/signing_key.py)
    VIGIL_KAFKA_BOOTSTRAP, VIGIL_TOPIC_PREFIX   where the silences topic is read from
GET /rules on the worker's HTTP API lists the active rules, current file errors, active silences
and counters.
"""

from __future__ import annotations

import logging
from typing import Any

from app.config import ConfigError, Settings, load_settings
from app.model.events import now_ms
from app.rules.stage import RulesStage, StageConfig
from app.runtime.agent import default_registry
from app.runtime.http import route, serve_metrics

__all__ = ["rules_api", "stage"]

log = logging.getLogger(__name__)


def _settings() -> Settings | None:
    try:
        return load_settings()
    except ConfigError as exc:  # the worker reports bad settings itself; rules can still run
        log.error("rules stage: %s; silences will not be read", exc)
        return None


#: The stage instance whose agents the worker runs.
stage = RulesStage(StageConfig.from_settings(_settings()), registry=default_registry)
serve_metrics(stage.metrics.registry)


@route("/rules")
def rules_api(query: dict[str, list[str]]) -> tuple[int, Any]:
    """Active rules, rule file errors (file:line: message), active silences and counters."""
    return 200, stage.describe(now_ms())
