"""Confluent's data-contract fields and config fields: validated, merged, stored (pure).

Vigil does not run data-contract rules, but clients and tools set and read these fields
(`metadata` and `ruleSet` on schemas; `defaultMetadata`, `overrideMetadata`, `defaultRuleSet`,
`overrideRuleSet`, `compatibilityGroup`, `alias`, `normalize`, `validateFields` on configs), so
the registry keeps them and answers them back the way Confluent's does. Registration merges a
schema's metadata and rule set with the subject's config as Confluent does:
merge(merge(default, the schema's own or else the previous version's), override).
"""

from __future__ import annotations

from typing import Any

from app.registry.compat import InvalidLevel, normalize_level

__all__ = [
    "CONFIG_FIELDS",
    "RULE_LISTS",
    "InvalidContract",
    "effective_contract",
    "merge_metadata",
    "merge_rule_sets",
    "parse_config_update",
    "validate_metadata",
    "validate_rule_set",
]

#: The config fields a PUT /config may set, besides the level ("compatibility").
CONFIG_FIELDS = ("compatibilityGroup", "defaultMetadata", "overrideMetadata", "defaultRuleSet", "overrideRuleSet",
                 "alias", "normalize", "validateFields")
#: The rule lists of a rule set.
RULE_LISTS = ("migrationRules", "domainRules", "encodingRules")
_LEVEL_KEYS = ("compatibility", "compatibilityLevel")
_BOOL_FIELDS = ("normalize", "validateFields")
_TEXT_FIELDS = ("compatibilityGroup", "alias")


class InvalidContract(ValueError):
    """A metadata, rule set or config field is malformed; `field` names it."""

    def __init__(self, field: str, reason: str, *, rule_set: bool = False) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        #: a rule-set problem (Confluent answers those with their own error code)
        self.rule_set = rule_set


def validate_metadata(value: Any, field: str = "metadata") -> dict[str, Any] | None:
    """{"tags"?: {str: [str]}, "properties"?: {str: str}, "sensitive"?: [str]} or None."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidContract(field, "must be a JSON object like {\"properties\": {\"owner\": \"team\"}}")
    tags, properties, sensitive = value.get("tags"), value.get("properties"), value.get("sensitive")
    if tags is not None and not (isinstance(tags, dict) and all(
            isinstance(v, list) and all(isinstance(t, str) for t in v) for v in tags.values())):
        raise InvalidContract(field, "tags must map names to lists of strings")
    if properties is not None and not (isinstance(properties, dict) and all(
            isinstance(v, str) for v in properties.values())):
        raise InvalidContract(field, "properties must map names to strings")
    if sensitive is not None and not (isinstance(sensitive, list) and all(isinstance(s, str) for s in sensitive)):
        raise InvalidContract(field, "sensitive must be a list of strings")
    return dict(value)


def validate_rule_set(value: Any, field: str = "ruleSet") -> dict[str, Any] | None:
    """{"migrationRules"?: [rule], "domainRules"?: [rule], "encodingRules"?: [rule]} or None;
    every rule an object with a name."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidContract(field, "must be a JSON object like {\"domainRules\": [...]}", rule_set=True)
    for name in RULE_LISTS:
        rules = value.get(name)
        if rules is None:
            continue
        if not isinstance(rules, list):
            raise InvalidContract(field, f"{name} must be a list of rules", rule_set=True)
        seen: set[str] = set()
        for rule in rules:
            if not isinstance(rule, dict) or not isinstance(rule.get("name"), str) or not rule["name"]:
                raise InvalidContract(field, f"every rule in {name} must be an object with a name", rule_set=True)
            if rule["name"] in seen:
                raise InvalidContract(field, f"{name} has two rules named {rule['name']!r}", rule_set=True)
            seen.add(rule["name"])
    return dict(value)


def parse_config_update(body: Any) -> dict[str, Any]:
    """The fields a PUT /config body sets (a None value clears that field); the level under
    "compatibilityLevel". Raises InvalidLevel for a bad or missing level (a body that sets
    nothing at all counts as a missing level), InvalidContract for another bad field."""
    if not isinstance(body, dict):
        raise InvalidLevel(body)
    update: dict[str, Any] = {}
    level_key = next((k for k in _LEVEL_KEYS if k in body), None)
    if level_key is not None:
        update["compatibilityLevel"] = normalize_level(body[level_key])
    for name in CONFIG_FIELDS:
        if name not in body:
            continue
        value = body[name]
        if value is not None:
            if name in _BOOL_FIELDS and not isinstance(value, bool):
                raise InvalidContract(name, "must be true or false")
            if name in _TEXT_FIELDS and not isinstance(value, str):
                raise InvalidContract(name, "must be a string")
            if name.endswith("Metadata"):
                value = validate_metadata(value, name)
            if name.endswith("RuleSet"):
                value = validate_rule_set(value, name)
        update[name] = value
    if not update:
        raise InvalidLevel(body.get("compatibility"))
    return update


def merge_metadata(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any] | None:
    """`new` over `old`: tags and properties by name, sensitive fields together."""
    if old is None or new is None:
        return new if old is None else old
    merged: dict[str, Any] = {}
    for name in ("tags", "properties"):
        if old.get(name) is not None or new.get(name) is not None:
            merged[name] = {**(old.get(name) or {}), **(new.get(name) or {})}
    if old.get("sensitive") is not None or new.get("sensitive") is not None:
        merged["sensitive"] = sorted({*(old.get("sensitive") or []), *(new.get("sensitive") or [])})
    return merged


def merge_rule_sets(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any] | None:
    """`new` over `old`, list by list: a rule of `new` replaces the rule of `old` with its name."""
    if old is None or new is None:
        return new if old is None else old
    merged: dict[str, Any] = {}
    for name in RULE_LISTS:
        old_rules, new_rules = old.get(name), new.get(name)
        if old_rules is None and new_rules is None:
            continue
        replaced = {rule["name"] for rule in new_rules or []}
        merged[name] = [rule for rule in old_rules or [] if rule["name"] not in replaced] + list(new_rules or [])
    return merged


def effective_contract(config: dict[str, Any], metadata: dict[str, Any] | None,
                       rule_set: dict[str, Any] | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The metadata and rule set a registration stores, given the subject's config in force."""
    merged_metadata = merge_metadata(merge_metadata(config.get("defaultMetadata"), metadata),
                                     config.get("overrideMetadata"))
    merged_rules = merge_rule_sets(merge_rule_sets(config.get("defaultRuleSet"), rule_set),
                                   config.get("overrideRuleSet"))
    return merged_metadata, merged_rules
