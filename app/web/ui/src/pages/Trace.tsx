// "Why did this fire", in one place: the rule (where it is defined, its trigger), the event that
// caused the firing, the action and its result, the follow-on events and their actions.
import { useEffect, useState } from "preact/hooks";
import { api } from "../api";
import { identityPath, iso, metricsText, stateClass } from "../format";
import { linkHandler, navigate } from "../router";

interface Node {
  kind: "event" | "firing" | "action" | "result";
  id: string;
  record: any;
  note?: string;
  children: Node[];
}

export function Trace({ id }: { id: string }) {
  const [answer, setAnswer] = useState<any>(null);
  const [error, setError] = useState("");
  const [input, setInput] = useState(id);
  useEffect(() => {
    setInput(id);
    if (!id) return;
    setAnswer(null);
    api(`/trace/${encodeURIComponent(id)}`)
      .then((a) => {
        setAnswer(a);
        setError("");
      })
      .catch((e) => setError(e.message));
  }, [id]);
  return (
    <div>
      <form class="filters" onSubmit={(e) => { e.preventDefault(); navigate(`/trace/${encodeURIComponent(input.trim())}`); }}>
        <label>Event, alert, action or result id <input class="wide" value={input} onInput={(e) => setInput((e.target as HTMLInputElement).value)} /></label>
        <button type="submit">Trace</button>
      </form>
      {error && <p class="error">{error}</p>}
      {answer && (
        <div class="trace" data-testid="trace">
          {answer.rules.length > 0 && (
            <div class="rules">
              {answer.rules.map((r: any) => (
                <div class="rulebox">
                  <b>rule {r.name}</b> <span class="muted">{r.location}</span> · trigger <b>{r.trigger}</b>
                  {r.group_by?.length ? ` · per ${r.group_by.join(", ")}` : ""}
                  {r.throttle_ms ? ` · throttle ${r.throttle_ms / 1000}s` : ""} · actions {r.actions.join(", ")}
                  {r.description && <div class="muted">{r.description}</div>}
                </div>
              ))}
            </div>
          )}
          <ul class="tree">
            <TraceNode node={answer.tree} />
          </ul>
          {answer.alerts.length > 0 && (
            <>
              <h3>Status transitions these events caused</h3>
              <ul>
                {answer.alerts.map((a: any) => (
                  <li>
                    {iso(a.time)} <a class="mono" href={identityPath(a.subject, a.name)} onClick={linkHandler(identityPath(a.subject, a.name))}>{a.subject}/{a.name}</a>{" "}
                    <span class={`badge ${stateClass(a.from_state)}`}>{a.from_state}</span> → <span class={`badge ${stateClass(a.to_state)}`}>{a.to_state}</span> {a.text}
                  </li>
                ))}
              </ul>
            </>
          )}
          {answer.events_missing.length > 0 && <p class="muted">not found in the archive index: {answer.events_missing.join(", ")}</p>}
        </div>
      )}
    </div>
  );
}

function TraceNode({ node }: { node: Node }) {
  const r = node.record || {};
  let body;
  if (node.kind === "event") {
    body = r.subject ? (
      <>
        <span class="kind">event</span>{" "}
        <a class="mono" href={identityPath(r.subject, r.name)} onClick={linkHandler(identityPath(r.subject, r.name))}>{r.subject}/{r.name}</a>{" "}
        {r.kind} {r.severity !== null && r.severity !== undefined ? `severity ${r.severity}` : ""} at {iso(r.time)}{" "}
        {metricsText(r.metrics)} {r.text ? `“${r.text}”` : ""}
        <span class="muted mono"> {node.id}</span>
      </>
    ) : (
      <><span class="kind">event</span> <span class="mono">{node.id}</span></>
    );
  } else if (node.kind === "firing") {
    body = (
      <>
        <span class="kind firing">rule fired</span> <b>{r.rule}</b> for {r.group_key || "(all)"} at {iso(r.time)}
      </>
    );
  } else if (node.kind === "action") {
    body = (
      <>
        <span class="kind action">action</span> {r.type} → <span class="mono">{r.target}</span>{" "}
        <span class={`badge res-${String(r.status).toLowerCase()}`}>{r.status}</span>
        {r.suppressed_by ? (r.suppressed_by.guard ? ` by ${r.suppressed_by.detail}` : ` by silence ${r.suppressed_by.id} (${r.suppressed_by.reason})`) : r.held_by ? ` (held by ${r.held_by.detail}, then released)` : ""}
        <span class="muted mono"> {node.id}</span>
      </>
    );
  } else {
    body = (
      <>
        <span class="kind result">result</span> <span class={`badge res-${String(r.status).toLowerCase()}`}>{r.status}</span> after {r.attempts ?? 1} attempt(s) at {iso(r.finished || r.time)}
        {r.error ? `: ${r.error}` : r.output ? `: ${r.output}` : ""}
      </>
    );
  }
  return (
    <li class={`tnode t-${node.kind}`} data-kind={node.kind}>
      <div>
        {body}
        {node.note && <span class="muted"> ({node.note})</span>}
      </div>
      {node.children.length > 0 && <ul>{node.children.map((c) => <TraceNode node={c} />)}</ul>}
    </li>
  );
}
