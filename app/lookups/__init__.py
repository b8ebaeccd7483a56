"""Hierarchical data for rules (like Puppet's Hiera): values looked up along a hierarchy of levels.

`<rules_dir>/hierarchy.yaml` lists levels, most specific first, each a path template over the event
(`host/{{ subject }}`, `role/{{ tags.role }}`, `common`); the data of a level is the file
`<rules_dir>/data/<path>.yaml` (or `.json`). A level whose template needs a field the event lacks is
skipped. Rules read the data with `lookup(KEY)` in action templates and in `match`/`when` operands.

Pure layers (none imports a Kafka client):
    hierarchy.py  hierarchy.yaml -> levels; an event -> its level paths
    data.py       data files -> mappings with line numbers; dotted keys
    resolve.py    first-match and merged lookups (unique, hash, deep); the per-path-tuple cache
    loader.py     the hierarchy and data files of a rules directory, hot reload, the LookupSource rules read
    operands.py   `lookup()` in templates, templated operands in match/when, the keys rules look up
    cli.py        `vigil lookup KEY --subject S --tag k=v`
"""

# Import from the submodules: importing the package stays cheap.
__all__: list[str] = []
