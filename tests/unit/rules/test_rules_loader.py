"""Rule files: every error kind reported as file:line, all at once; hot reload keeps last good versions."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from app.rules.loader import RuleSetLoader, check_rules, load_rules

from .conftest import REPO, errors_of

GOOD = """\
rules:
  - name: a
    match: {name: load}
    actions: [{print: {}}]
"""

# (file text, expected line, expected message fragment) - one error kind per row.
ERROR_CASES = [
    ("rules:\n  - name: a\n    match: {name: x}\n    acitons: [{print: {}}]\n", 4,
     "unknown key `acitons` (did you mean `actions`?)"),
    ("rules:\n  - name: a\n    match: {severity: {gtt: 1}}\n    actions: [{print: {}}]\n", 3,
     "unknown operator `gtt` (did you mean `gt`?)"),
    ("rules:\n  - name: a\n    absent_for: soon\n    actions: [{print: {}}]\n", 3, "'soon' is not a duration"),
    ("rules:\n  - name: a\n    match: {name: x}\n    throttle: {once_within: -5m}\n    actions: [{print: {}}]\n", 4,
     "throttle.once_within"),
    ("rules:\n  - name: a\n    match:\n      text: {regex: '(oops'}\n    actions: [{print: {}}]\n", 4, "bad regex"),
    ("rules:\n  - name: a\n    match: {name: x}\n    actions:\n      - print: {msg: '{{ event.subject '}\n", 5,
     "template syntax error"),
    ("rules:\n  - name: a\n    match: {name: x}\n    actions:\n      - print: {target: '{% if %}'}\n", 5,
     "template syntax error"),
    ("rules:\n  - name: a\n    actions: [{print: {}}]\n", 2, "rule has no trigger and no `match`"),
    ("rules:\n  - name: a\n    absent_for: 1m\n    count: {at_least: 2, within: 1m}\n    actions: [{print: {}}]\n",
     4, "exactly one trigger, found 2: absent_for, count"),
    ("rules:\n  - name: a\n    match: {name: x}\n", 2, "rule needs `actions:`"),
    ("rules:\n  - name: a\n    match: {name: x}\n    actions: []\n", 4, "rule needs `actions:`"),
    ("rules:\n  - name: a\n    register: {metric: m, aggregate: mean, period: 10s}\n    when: {gt: 1}\n"
     "    actions: [{print: {}}]\n", 3, "unknown aggregate 'mean'"),
    ("rules:\n  - name: a\n    register: {metric: m, period: 10s}\n    actions: [{print: {}}]\n", 3,
     "register needs a `when:`"),
    ("rules:\n  - name: a\n    match: {name: x}\n    when: {gt: 1}\n    actions: [{print: {}}]\n", 4,
     "`when` only applies to a `register` trigger"),
    ("rules:\n  - name: a\n    sequence: [{match: {name: x}}, {match: {name: y}}]\n    actions: [{print: {}}]\n", 3,
     "sequence needs `within:`"),
    ("rules:\n  - name: a\n    sequence: [{match: {name: x}}]\n    within: 1m\n    actions: [{print: {}}]\n", 3,
     "at least two steps"),
    ("rules:\n  - name: a\n    status: {to: BROKEN}\n    actions: [{print: {}}]\n", 3, "'BROKEN' is not a state"),
    ("rules:\n  - name: a\n    count: {at_least: 0, within: 1m}\n    actions: [{print: {}}]\n", 3,
     "count.at_least must be an integer"),
    ("rules:\n  - name: a\n    match: {subjet: x}\n    actions: [{print: {}}]\n", 3,
     "unknown field `subjet` (did you mean `subject`?)"),
    ("rules:\n  - name: a\n    match: {name: x}\n    group_by: [tags]\n    actions: [{print: {}}]\n", 4,
     "group_by: unknown field `tags`"),
    ("rules:\n  - name: a\n    match: {name: x}\n    actions:\n      - print: {}\n        http: {}\n", 5,
     "each action is one `TYPE: {params}` mapping, found 2 keys"),
    ("rules:\n  - name: a\n    match: {name: x}\n    actions:\n      - shell: {command: '{{ event.text }}'}\n", 5,
     "`command` must be the fixed name of an allowlisted command"),
    ("rules:\n  - name: a\n    match: {name: x}\n    actions:\n      - print:\n          when: 2024-01-01\n", 6,
     "is not a JSON value; quote it"),
    ("rules:\n  - name: a\n    match: {name: x}\n    actions:\n      - print: {n: .nan}\n", 5,
     "is not a JSON value"),
    ("rules:\n  - name: a\n    match: {name: x}\n    actions:\n      - http: {deadline: later}\n", 5,
     "action 1 (http).deadline"),
    ("rules:\n  - name: a b\n    match: {name: x}\n    actions: [{print: {}}]\n", 2, "rule name 'a b'"),
    ("rules:\n  - name: off\n    match: {name: x}\n    actions: [{print: {}}]\n", 2, "quote the name"),
    ("rules:\n  - name: a\n    match: {name: x}\n    actions: [{print: {}}]\n  - name: a\n    match: {name: y}\n"
     "    actions: [{print: {}}]\n", 5, "duplicate rule name `a` (first defined at t.yaml:2)"),
    ("rules:\n  - name: a\n    match: {name: x}\n    match: {name: y}\n    actions: [{print: {}}]\n", 4,
     "duplicate key `match` (first at line 3)"),
    ("rules:\n  - name: a\n    match: {name: x\n    actions: []\n", 4, "not valid YAML"),
    ("\x14rules: []\n", 1, "special characters are not allowed"),  # the reader refuses it at once
    ("", 1, "file is empty"),
    ("- name: a\n", 1, "expected a top-level mapping with a `rules:` list"),
    ("rules: {name: a}\n", 1, "`rules:` must be a list"),
    ("rules: []\nrulez: []\n", 2, "file: unknown key `rulez`"),
    ("rules:\n  - just a string\n", 2, "each item of `rules:` must be a mapping"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), ERROR_CASES)
def test_check__reports_each_error_kind_with_file_and_line(tmp_path: Path, text: str, line: int,
                                                           fragment: str) -> None:
    (tmp_path / "t.yaml").write_text(text)
    errors = [str(e) for e in check_rules(tmp_path)]
    prefix = f"{tmp_path / 't.yaml'}:{line}: "
    assert any(e.startswith(prefix) and fragment.replace("t.yaml", str(tmp_path / "t.yaml")) in e
               for e in errors), errors


def test_check__reports_every_error_in_a_file_at_once() -> None:
    errors = errors_of("""\
        rules:
          - name: a
            match: {subjet: x, severity: {gtt: 1}}
            throttle: {once_within: never}
            actions: [{print: {msg: "{{ oops "}}]
          - name: b
            absent_for: 1m
            count: {at_least: 1, within: 1m}
    """)
    lines = sorted(int(e.split(":")[1]) for e in errors)
    assert lines == [3, 3, 4, 5, 6, 8], errors


def test_check__duplicate_names_across_files_name_both_places(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text("# other\n" + GOOD)
    errors = [str(e) for e in check_rules(tmp_path)]
    assert errors == [f"{tmp_path / 'b.yaml'}:3: duplicate rule name `a`: already defined at "
                      f"{tmp_path / 'a.yaml'}:2; rule names must be unique across files"]


def test_check__missing_directory_is_an_error(tmp_path: Path) -> None:
    (error,) = check_rules(tmp_path / "nope")
    assert "not a directory of rule files" in error.message


def test_check__the_shipped_example_rules_are_valid() -> None:
    ruleset, errors = load_rules(REPO / "rules")
    assert errors == []
    assert ruleset.get("client-load-high") is not None
    assert {r.trigger.kind for r in ruleset} >= {"register", "absent_for", "count", "status", "match"}


def test_check__a_broken_file_does_not_stop_the_others(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("rules: [oops\n")
    (tmp_path / "b.yaml").write_text(GOOD)
    ruleset, errors = load_rules(tmp_path)
    assert [r.name for r in ruleset] == ["a"] and len(errors) == 1


def test_loader__skips_hidden_files_and_reads_subfolders(tmp_path: Path) -> None:
    (tmp_path / ".a.yaml.swp.yaml").write_text("broken: [")
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "x.yml").write_text(GOOD)
    (tmp_path / "notes.txt").write_text("not rules")
    ruleset, errors = load_rules(tmp_path)
    assert errors == [] and [r.file for r in ruleset] == [str(tmp_path / "team" / "x.yml")]


def test_loader__reads_a_configmap_volume_whose_folders_are_symlinks(tmp_path: Path) -> None:
    """The layout the kubelet gives a ConfigMap volume with `items` paths like gates/x.yaml: every
    visible entry is a symlink into the hidden ..data folder, which is itself a symlink to a
    timestamped folder; the hidden copies are not read twice."""
    data = tmp_path / "..2026_12_05_11_00_00.000000001"
    (data / "team").mkdir(parents=True)
    (data / "a.yaml").write_text(GOOD)
    (data / "team" / "x.yaml").write_text(GOOD.replace("name: a", "name: x"))
    (tmp_path / "..data").symlink_to(data.name)
    (tmp_path / "a.yaml").symlink_to("..data/a.yaml")
    (tmp_path / "team").symlink_to("..data/team")
    (data / "team" / "loop").symlink_to("..")  # a loop ends instead of recursing forever
    ruleset, errors = load_rules(tmp_path)
    assert errors == []
    assert [r.file for r in ruleset] == [str(tmp_path / "a.yaml"), str(tmp_path / "team" / "x.yaml")]


def test_loader__disabled_rules_are_checked_but_not_enabled(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD.replace("    match:", "    enabled: false\n    match:"))
    ruleset, errors = load_rules(tmp_path)
    assert errors == [] and len(ruleset) == 1 and ruleset.enabled == ()


# --- hot reload ---------------------------------------------------------------------------------------

def write(path: Path, text: str) -> None:
    """Write and bump mtime (coarse filesystem clocks could otherwise hide a quick rewrite)."""
    path.write_text(textwrap.dedent(text))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_reload__broken_file_keeps_its_last_good_version(tmp_path: Path) -> None:
    loader = RuleSetLoader(tmp_path)
    write(tmp_path / "a.yaml", GOOD)
    assert [r.name for r in loader.reload().ruleset] == ["a"]
    good_rule = loader.ruleset.get("a")

    write(tmp_path / "a.yaml", GOOD.replace("name: a", "name: a2").replace("{print: {}}", "{print: {x: '{{'}}"))
    result = loader.reload()
    assert result.changed and result.ruleset.get("a") is good_rule and result.ruleset.get("a2") is None
    assert [e.line for e in result.errors] == [4]

    write(tmp_path / "a.yaml", GOOD.replace("name: a", "name: a3"))
    result = loader.reload()
    assert [r.name for r in result.ruleset] == ["a3"] and result.errors == []


def test_reload__unchanged_and_touched_files_are_not_recompiled(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", GOOD)
    loader = RuleSetLoader(tmp_path)
    rule = loader.reload().ruleset.get("a")
    assert loader.reload().changed is False
    write(tmp_path / "a.yaml", GOOD)  # same content, new mtime
    result = loader.reload()
    assert result.changed is False and result.ruleset.get("a") is rule


def test_reload__added_and_deleted_files(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", GOOD)
    loader = RuleSetLoader(tmp_path)
    loader.reload()
    write(tmp_path / "b.yaml", GOOD.replace("name: a", "name: b"))
    assert [r.name for r in loader.reload().ruleset] == ["a", "b"]
    (tmp_path / "a.yaml").unlink()
    result = loader.reload()
    assert [r.name for r in result.ruleset] == ["b"] and result.changed_files == (str(tmp_path / "a.yaml"),)


def test_reload__a_newcomer_cannot_steal_an_active_rule_name(tmp_path: Path) -> None:
    write(tmp_path / "z.yaml", GOOD)
    write(tmp_path / "a.yaml", GOOD.replace("name: a", "name: other"))
    loader = RuleSetLoader(tmp_path)
    loader.reload()
    active = loader.ruleset.get("a")
    # a.yaml sorts first, but z.yaml already owns `a`: a.yaml counts as broken and keeps `other`.
    write(tmp_path / "a.yaml", GOOD)
    result = loader.reload()
    assert result.ruleset.get("a") is active and result.ruleset.get("other") is not None
    assert [(Path(e.file).name, "already defined at" in e.message) for e in result.errors] == [("a.yaml", True)]
    # Once the owner lets go of the name, the newcomer gets it.
    write(tmp_path / "z.yaml", GOOD.replace("name: a", "name: z"))
    result = loader.reload()
    assert sorted(r.name for r in result.ruleset) == ["a", "z"] and result.errors == []
