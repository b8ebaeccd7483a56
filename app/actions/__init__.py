"""Actions as people see them: `vigil actions` (recent actions joined with their results),
`vigil trace ID` (the causal chain around an event, action or result) and `vigil silence`
(maintenance windows the rules stage honours). The stage itself lives in app/rules/."""

__all__: list[str] = []
