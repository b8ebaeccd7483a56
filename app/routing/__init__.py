"""Routing and sampling: routes in `<rules_dir>/routes/*.yaml` copy the events that match a filter
(the rules' match grammar) to other topics, optionally a deterministic sample of them.

    routes:
      - name: prod-sample-to-dev
        match: {tags.env: production}
        to: dev-events                        # a topic of this cluster (the topic prefix applies)
        sample: {percent: 10, by: identity}   # optional; by: identity (default) or event_id

Modules: spec (one file's text -> validated routes), sampling (the stable in/out decision), router
(which routes an event takes, at pipeline speed), loader (a directory, hot reloaded), catalog (which
destination topics exist), stage (the built-in worker stage), cli (`vigil routes list|test`).
"""

__all__: list[str] = []
