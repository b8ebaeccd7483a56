// Alerts: the live feed (new ones on top as they happen) over the stored history, filtered by state,
// subject and range.
import { useEffect, useState } from "preact/hooks";
import { api } from "../api";
import { identityPath, iso, stateClass, STATES } from "../format";
import { subscribe } from "../live";
import { linkHandler, replaceQuery, useLocation } from "../router";
import { globMatch } from "./glob";

export function Alerts() {
  const loc = useLocation();
  const since = loc.query.get("since") || "24h";
  const subject = loc.query.get("subject") || "";
  const states = loc.query.getAll("state");
  const [alerts, setAlerts] = useState<any[]>([]);
  const [error, setError] = useState("");
  const [form, setForm] = useState({ since, subject });
  const load = () =>
    api("/alerts", { since, subject: subject || undefined, state: states, limit: 500 })
      .then((a) => {
        setAlerts(a.alerts);
        setError("");
      })
      .catch((e) => setError(e.message));
  useEffect(() => {
    load();
  }, [loc.query.toString()]);
  useEffect(() => {
    const off = subscribe("alert", (a: any) => {
      if (states.length && !states.includes(a.to_state)) return;
      if (subject && !globMatch(subject, a.subject)) return;
      setAlerts((prev) => (prev.some((p) => p.id === a.id) ? prev : [a, ...prev].slice(0, 1000)));
    });
    const offReset = subscribe("reset", load);
    return () => {
      off();
      offReset();
    };
  }, [loc.query.toString()]);
  const apply = (extra: Record<string, any> = {}) => replaceQuery({ since: form.since, subject: form.subject, state: states, ...extra });
  return (
    <div>
      <form class="filters" onSubmit={(e) => { e.preventDefault(); apply(); }}>
        <label>Since <input value={form.since} onInput={(e) => setForm({ ...form, since: (e.target as HTMLInputElement).value })} /></label>
        <label>Subject <input value={form.subject} placeholder="glob" onInput={(e) => setForm({ ...form, subject: (e.target as HTMLInputElement).value })} /></label>
        <button type="submit">Show</button>
        {STATES.map((s) => (
          <button type="button" class={`chip ${stateClass(s)} ${states.includes(s) ? "on" : ""}`}
            onClick={() => apply({ state: states.includes(s) ? states.filter((x) => x !== s) : [...states, s] })}>{s}</button>
        ))}
      </form>
      {error && <p class="error">{error}</p>}
      <table class="grid" data-testid="alerts">
        <thead><tr><th>Time</th><th>Identity</th><th>From</th><th>To</th><th>Text</th><th>Why</th></tr></thead>
        <tbody>
          {alerts.map((a) => (
            <tr>
              <td>{iso(a.time)}</td>
              <td><a class="mono" href={identityPath(a.subject, a.name)} onClick={linkHandler(identityPath(a.subject, a.name))}>{a.subject}/{a.name}</a></td>
              <td><span class={`badge ${stateClass(a.from_state)}`}>{a.from_state}</span></td>
              <td><span class={`badge ${stateClass(a.to_state)}`}>{a.to_state}{a.flapping ? " ⚡" : ""}</span></td>
              <td>{a.text}</td>
              <td>{a.cause_event_id ? <a href={`/trace/${a.cause_event_id}`} onClick={linkHandler(`/trace/${a.cause_event_id}`)}>trace</a> : "-"}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {!alerts.length && !error && <p class="muted">no alerts in this range</p>}
    </div>
  );
}
