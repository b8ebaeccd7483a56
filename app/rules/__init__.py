"""Rules: YAML rule files -> compiled rules -> pure, event-time-driven evaluation -> rendered actions.

Pure layers (each usable alone; none imports a Kafka client or rocksdict):
    source.py     line-aware YAML + RuleError            fields.py   field keys, group keys
    match.py      match/when predicates                  templates.py  sandboxed Jinja params
    triggers.py   register/status/absent_for/count/sequence/schedule (pure state machines)
    schedules.py  cron/interval slots, per-target splay, the due slot (pure)
    spec.py       one file -> validated Rules            loader.py   directory, hot reload
    engine.py     RuleEngine: events/transitions/timers -> Firings
    actions.py    Firing -> RenderedAction | RenderFailure (deterministic ids)
    offline.py    run rules over recorded JSONL by event time; compare with expectations
    cli.py        `vigil rules check` / `vigil rules test`
    silences.py   silence records, matching, the in-memory SilenceSet
    dependencies.py  `<rules_dir>/dependencies/*.yaml`: declarations, cycle check, hot reload
    inhibit.py    which firings a failing dependency holds back, settle, release (pure decisions)

The stage (runs in the worker, on the runtime agent API):
    stage.py      RulesStage: repartition by group key, evaluate, sign, send/suppress/dead-letter
    agent.py      the built-in instance `vigil worker` runs, and GET /rules
    silence_reader.py  tails the compacted `silences` topic      signing_key.py  load_signing_key()
    dependency_reader.py  tails the compacted `status` topic into the dependencies' view
    topics.py     topic names           stage_metrics.py  Prometheus counters of the stage

Grammar (contract; additions marked +):
    rules:                         # top-level list in every *.yaml/*.yml file of the rules directory
      - name: unique-name          # unique across all files
        description: text          # optional
        enabled: false             # + optional, default true
        match: {FIELD: COND, any: [MATCH...], all: [MATCH...], not: MATCH}
            # FIELD: subject name kind origin severity type text tags.K metrics.K data.PATH
            #        (+ id time trace_id ttl from_state to_state cause_event_id)
            # COND: "glob*" | scalar (eq) | {eq ne gt ge lt le in not_in regex contains startswith
            #        endswith exists: ..., + any/all/not of CONDs}
            # + an operand (not of regex/exists) may be a template read per event, e.g.
            #   {gt: "{{ lookup('thresholds.load') }}"} (app.lookups; in `when:` too)
        group_by: [subject, name]  # scopes trigger state and throttle; default [subject, name]
                                   # ([subject] for sequence); [] = one group for everything
        # at most one trigger (none: every matching event fires):
        register: {metric: load1, aggregate: avg|min|max|sum|count|last|rate|p95 (+ pNN),
                   period: 10s, max_samples: 512 (+)}
        when: {gt: 20}             # with register
        for: 30s                   # with register, optional
        status: {from: OK, to: CRITICAL}    # either optional; + a list or glob of states
        absent_for: 60s
        count: {at_least: 5, within: 60s}   # + after firing, counting starts afresh
        sequence: [{match: MATCH}, {match: MATCH}]
        schedule: {cron: "*/30 * * * *", splay: 10m}   # + or {every: 1h, splay: 5m}; UTC; once per
                                   # slot per group; without match: one group, no events needed
        every: 1h                  # + the same as schedule: {every: 1h}
        within: 10m                # with sequence
        throttle: {once_within: 5m}
        state_retention: 30d       # + optional: a group quiet this long (event time) loses its trigger
                                   #   state and throttle (0: never); default: rules_state_retention (7d)
        actions:
          - TYPE: {PARAM: TEMPLATE..., target: TEMPLATE, deadline: 5m (+)}
            # + templates may call lookup(KEY, event, default=, merge=) (app.lookups.operands)
"""

# Import from the submodules (app.rules.engine, app.rules.loader, ...): importing the package stays cheap.
__all__: list[str] = []
