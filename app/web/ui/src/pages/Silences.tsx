// Silences: the list (active, or all), a form to add one (what it matches, why, for how long), and
// expiring one. The form keeps what is typed while the list updates live.
import { useEffect, useState } from "preact/hooks";
import { api, ApiError, del, post } from "../api";
import { ago, iso } from "../format";
import { subscribe } from "../live";

interface MatchRow {
  field: string;
  glob: string;
}

export function Silences() {
  const [silences, setSilences] = useState<any[]>([]);
  const [showAll, setShowAll] = useState(false);
  const [error, setError] = useState("");
  const load = () => api("/silences", { all: showAll }).then((s) => setSilences(s.silences)).catch((e) => setError(e.message));
  useEffect(() => {
    load();
    const offs = [subscribe("silence", load), subscribe("reset", load)];
    const timer = setInterval(load, 30000);
    return () => {
      offs.forEach((o) => o());
      clearInterval(timer);
    };
  }, [showAll]);
  const expire = (id: string) => del(`/silences/${encodeURIComponent(id)}`).then(load).catch((e: ApiError) => setError(e.message));
  return (
    <div>
      <AddSilence onAdded={load} />
      {error && <p class="error">{error}</p>}
      <h3>
        Silences <label class="muted"><input type="checkbox" checked={showAll} onChange={(e) => setShowAll((e.target as HTMLInputElement).checked)} /> include ended</label>
      </h3>
      <table class="grid" data-testid="silences">
        <thead><tr><th>Id</th><th>Matches</th><th>Rule</th><th>Until</th><th>Reason</th><th></th></tr></thead>
        <tbody>
          {silences.map((s) => (
            <tr data-testid="silence-row" data-active={String(s.active)}>
              <td class="mono">{s.id}</td>
              <td class="mono">{Object.entries(s.match).map(([k, v]) => `${k}=${v}`).join(" ")}</td>
              <td>{s.rule || "any"}</td>
              <td>{iso(s.until_ms)} ({s.active ? ago(s.until_ms) : "ended"})</td>
              <td>{s.reason}</td>
              <td>{s.active && <button type="button" onClick={() => expire(s.id)}>Expire</button>}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {!silences.length && <p class="muted">no {showAll ? "" : "active "}silences</p>}
    </div>
  );
}

function AddSilence({ onAdded }: { onAdded: () => void }) {
  const [rows, setRows] = useState<MatchRow[]>([{ field: "subject", glob: "" }]);
  const [rule, setRule] = useState("");
  const [duration, setDuration] = useState("2h");
  const [reason, setReason] = useState("");
  const [message, setMessage] = useState("");
  const submit = async (ev: Event) => {
    ev.preventDefault();
    const match = rows.filter((r) => r.field.trim() && r.glob).map((r) => `${r.field.trim()}=${r.glob}`);
    try {
      const s = await post("/silences", { match, rule: rule || undefined, duration, reason });
      setMessage(`added ${s.id} until ${iso(s.until_ms)}`);
      setReason("");
      onAdded();
    } catch (e) {
      const err = e as ApiError;
      setMessage(`${err.message}`);
    }
  };
  const set = (i: number, patch: Partial<MatchRow>) => setRows(rows.map((r, j) => (i === j ? { ...r, ...patch } : r)));
  return (
    <form class="card" onSubmit={submit} data-testid="silence-form">
      <h3>Add a silence</h3>
      {rows.map((r, i) => (
        <div class="matchrow">
          <input name={`field${i}`} value={r.field} placeholder="field: subject, name, tags.env, target, action" onInput={(e) => set(i, { field: (e.target as HTMLInputElement).value })} />
          <span>=</span>
          <input name={`glob${i}`} value={r.glob} placeholder="glob" onInput={(e) => set(i, { glob: (e.target as HTMLInputElement).value })} />
        </div>
      ))}
      <button type="button" onClick={() => setRows([...rows, { field: "", glob: "" }])}>+ match</button>
      <label>Rule <input name="rule" value={rule} placeholder="rule name glob (optional)" onInput={(e) => setRule((e.target as HTMLInputElement).value)} /></label>
      <label>For <input name="duration" class="short" value={duration} onInput={(e) => setDuration((e.target as HTMLInputElement).value)} /></label>
      <label>Reason <input name="reason" class="wide" value={reason} required onInput={(e) => setReason((e.target as HTMLInputElement).value)} /></label>
      <button type="submit">Add silence</button>
      {message && <p class="muted" data-testid="silence-message">{message}</p>}
    </form>
  );
}
