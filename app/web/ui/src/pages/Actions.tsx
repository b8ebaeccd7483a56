// Actions joined with their results (or the silence that suppressed them), filtered by rule,
// target and state; new actions and results arrive live.
import { useEffect, useState } from "preact/hooks";
import { api } from "../api";
import { iso } from "../format";
import { subscribe } from "../live";
import { linkHandler, replaceQuery, useLocation } from "../router";

const RESULT_STATES = ["PENDING", "SUPPRESSED", "SUCCEEDED", "FAILED", "TIMED_OUT", "EXPIRED", "REJECTED"];

export function Actions() {
  const loc = useLocation();
  const q = loc.query;
  const [form, setForm] = useState({ rule: q.get("rule") || "", target: q.get("target") || "", since: q.get("since") || "24h" });
  const states = q.getAll("state");
  const [rows, setRows] = useState<any[]>([]);
  const [error, setError] = useState("");
  const load = () =>
    api("/actions", { rule: q.get("rule") || undefined, target: q.get("target") || undefined, state: states, since: q.get("since") || "24h", limit: 500 })
      .then((a) => {
        setRows(a.actions);
        setError("");
      })
      .catch((e) => setError(e.message));
  useEffect(() => {
    load();
    let timer: number | null = null;
    const later = () => {
      if (timer === null) timer = window.setTimeout(() => { timer = null; load(); }, 500);
    };
    const offs = [subscribe("action", later), subscribe("result", later), subscribe("suppressed", later), subscribe("reset", later)];
    return () => {
      offs.forEach((o) => o());
      if (timer !== null) clearTimeout(timer);
    };
  }, [q.toString()]);
  const apply = (extra: Record<string, any> = {}) => replaceQuery({ ...form, state: states, ...extra });
  return (
    <div>
      <form class="filters" onSubmit={(e) => { e.preventDefault(); apply(); }}>
        <label>Rule <input value={form.rule} placeholder="glob" onInput={(e) => setForm({ ...form, rule: (e.target as HTMLInputElement).value })} /></label>
        <label>Target <input value={form.target} placeholder="glob" onInput={(e) => setForm({ ...form, target: (e.target as HTMLInputElement).value })} /></label>
        <label>Since <input class="short" value={form.since} onInput={(e) => setForm({ ...form, since: (e.target as HTMLInputElement).value })} /></label>
        <button type="submit">Show</button>
        {RESULT_STATES.map((s) => (
          <button type="button" class={`chip res-${s.toLowerCase()} ${states.includes(s) ? "on" : ""}`}
            onClick={() => apply({ state: states.includes(s) ? states.filter((x) => x !== s) : [...states, s] })}>{s}</button>
        ))}
      </form>
      {error && <p class="error">{error}</p>}
      <table class="grid" data-testid="actions">
        <thead><tr><th>Time</th><th>Rule</th><th>Action</th><th>Target</th><th>State</th><th>Result</th><th>Trace</th></tr></thead>
        <tbody>
          {rows.map((a) => {
            const last = a.results?.length ? a.results[a.results.length - 1] : null;
            return (
              <tr data-testid="action-row" data-state={a.status}>
                <td>{iso(a.time)}</td>
                <td>{a.rule}</td>
                <td>{a.type}</td>
                <td class="mono">{a.target}</td>
                <td><span class={`badge res-${String(a.status).toLowerCase()}`}>{a.status}</span></td>
                <td class="text">{a.suppressed_by ? (a.suppressed_by.guard ? `${a.suppressed_by.detail}` : `silence ${a.suppressed_by.id}: ${a.suppressed_by.reason}`) : a.held_by ? `held: ${a.held_by.detail}, then released` : last ? (last.error || last.output || "") : ""}</td>
                <td><a href={`/trace/${a.id}`} onClick={linkHandler(`/trace/${a.id}`)}>why</a></td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {!rows.length && !error && <p class="muted">no actions in this range</p>}
    </div>
  );
}
