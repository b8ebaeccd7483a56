// Backtest: pick a range and a rule set (the deployed rules, with one file edited), run it over the
// recorded events, and see what would have fired and how that differs from the deployed rules.
import { useEffect, useRef, useState } from "preact/hooks";
import { api, ApiError, post } from "../api";
import { iso } from "../format";
import { linkHandler, navigate, useLocation } from "../router";

export function Backtest() {
  const loc = useLocation();
  const id = loc.query.get("id") || "";
  const [files, setFiles] = useState<Record<string, string>>({});
  const [deployed, setDeployed] = useState<Record<string, string>>({});
  const [current, setCurrent] = useState("");
  const [from, setFrom] = useState("-6h");
  const [to, setTo] = useState("now");
  const [subject, setSubject] = useState("");
  const [error, setError] = useState<string[]>([]);
  const [recent, setRecent] = useState<any[]>([]);
  useEffect(() => {
    api("/rules").then((r) => {
      setDeployed(r.files);
      setFiles(r.files);
      setCurrent(Object.keys(r.files)[0] || "");
    }).catch((e) => setError([e.message]));
    api("/backtests").then((b) => setRecent(b.backtests)).catch(() => undefined);
  }, []);
  const run = async (ev: Event) => {
    ev.preventDefault();
    setError([]);
    try {
      const job = await post("/backtests", { from, to, files, subject: subject || undefined, compare: true });
      navigate(`/backtest?id=${job.id}`);
    } catch (e) {
      const err = e as ApiError;
      setError([err.message, ...(err.errors || [])]);
    }
  };
  const edited = Object.keys(files).filter((f) => files[f] !== deployed[f]);
  return (
    <div class="backtest">
      <form class="card" onSubmit={run} data-testid="backtest-form">
        <div class="filters">
          <label>From <input name="from" class="short" value={from} onInput={(e) => setFrom((e.target as HTMLInputElement).value)} /></label>
          <label>To <input name="to" class="short" value={to} onInput={(e) => setTo((e.target as HTMLInputElement).value)} /></label>
          <label>Subjects <input name="subject" class="short" value={subject} placeholder="glob (all)" onInput={(e) => setSubject((e.target as HTMLInputElement).value)} /></label>
          <label>
            Rule file{" "}
            <select name="file" value={current} onChange={(e) => setCurrent((e.target as HTMLSelectElement).value)}>
              {Object.keys(files).map((f) => <option value={f}>{f}{files[f] !== deployed[f] ? " (edited)" : ""}</option>)}
            </select>
          </label>
          <button type="button" onClick={() => setFiles({ ...files, [current]: deployed[current] })} disabled={files[current] === deployed[current]}>Undo edits</button>
          <button type="submit">Run backtest</button>
        </div>
        <textarea name="rules" spellcheck={false} value={files[current] || ""} onInput={(e) => setFiles({ ...files, [current]: (e.target as HTMLTextAreaElement).value })} />
        <p class="muted">Compared with the deployed rules{edited.length ? `; edited: ${edited.join(", ")}` : " (no edits: both sides are the same)"}. Nothing is sent: the actions are what would have been sent.</p>
        {error.length > 0 && <pre class="error">{error.join("\n")}</pre>}
      </form>
      {id && <BacktestResult id={id} />}
      {recent.length > 0 && (
        <div class="card">
          <h3>Recent backtests</h3>
          <ul>
            {recent.map((b) => (
              <li><a href={`/backtest?id=${b.id}`} onClick={linkHandler(`/backtest?id=${b.id}`)}>{b.id}</a> {b.state} · {iso(b.request.from)} .. {iso(b.request.to)} · {(b.request.files || ["deployed"]).join(", ")}</li>
            ))}
          </ul>
        </div>
      )}
    </div>
  );
}

function BacktestResult({ id }: { id: string }) {
  const [job, setJob] = useState<any>(null);
  const [error, setError] = useState("");
  const timer = useRef<number | null>(null);
  useEffect(() => {
    let stopped = false;
    const poll = () =>
      api(`/backtests/${encodeURIComponent(id)}`)
        .then((j) => {
          if (stopped) return;
          setJob(j);
          if (j.state === "queued" || j.state === "running") timer.current = window.setTimeout(poll, 700);
        })
        .catch((e) => setError(e.message));
    poll();
    return () => {
      stopped = true;
      if (timer.current !== null) clearTimeout(timer.current);
    };
  }, [id]);
  if (error) return <p class="error">{error}</p>;
  if (!job) return <p class="muted">loading…</p>;
  if (job.state === "queued" || job.state === "running") {
    const p = job.progress || {};
    return <p class="muted" data-testid="backtest-progress">backtest {job.state}: {p.records ?? 0}{p.total ? ` of ${p.total}` : ""} records{p.position ? `, at ${iso(p.position)}` : ""}</p>;
  }
  if (job.state === "failed") return <p class="error">backtest failed: {job.error}</p>;
  const r = job.result;
  const compare: any[] = r.summary.compare || [];
  const perRule = new Map<string, { a: number; b: number; onlyA: number; onlyB: number; both: number }>();
  for (const d of compare) {
    const t = perRule.get(d.rule) || { a: 0, b: 0, onlyA: 0, onlyB: 0, both: 0 };
    t.onlyA += d.only_a;
    t.onlyB += d.only_b;
    t.both += d.both;
    t.a = t.onlyA + t.both;
    t.b = t.onlyB + t.both;
    perRule.set(d.rule, t);
  }
  return (
    <div class="card" data-testid="backtest-result">
      <h3>Backtest {job.id}</h3>
      <p class="muted">
        {iso(job.request.from)} .. {iso(job.request.to)} · {r.read} events read{r.unreadable ? `, ${r.unreadable} unreadable` : ""} · {r.elapsed_s}s ·
        rule sets: {r.rulesets.join(" vs ")}
      </p>
      {r.no_data && <p class="error">no events in this range</p>}
      {compare.length > 0 ? (
        <>
          <h4>Firings per rule: deployed (A) vs edited (B)</h4>
          <table class="grid" data-testid="backtest-rules">
            <thead><tr><th>Rule</th><th>A (deployed)</th><th>B (edited)</th><th>only A</th><th>only B</th><th>both</th></tr></thead>
            <tbody>
              {[...perRule.entries()].map(([rule, t]) => (
                <tr class={t.onlyA || t.onlyB ? "differs" : ""}>
                  <td>{rule}</td><td>{t.a}</td><td>{t.b}</td><td class="side-a">{t.onlyA}</td><td class="side-b">{t.onlyB}</td><td>{t.both}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <h4>Where they differ (rule and target)</h4>
          <table class="grid" data-testid="backtest-diff">
            <thead><tr><th>Rule</th><th>Target</th><th>only A</th><th>only B</th><th>both</th><th>first only in A</th><th>first only in B</th></tr></thead>
            <tbody>
              {compare.filter((d) => d.only_a || d.only_b).map((d) => (
                <tr>
                  <td>{d.rule}</td><td class="mono">{d.target}</td><td class="side-a">{d.only_a}</td><td class="side-b">{d.only_b}</td><td>{d.both}</td>
                  <td>{d.first_only_a ? iso(d.first_only_a.time) : "-"}</td><td>{d.first_only_b ? iso(d.first_only_b.time) : "-"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      ) : (
        <table class="grid">
          <thead><tr><th>Rule</th><th>Firings</th><th>Actions</th><th>Targets</th><th>First</th><th>Last</th></tr></thead>
          <tbody>{r.summary.rules.map((s: any) => <tr><td>{s.rule}</td><td>{s.firings}</td><td>{s.actions}</td><td>{s.targets}</td><td>{s.first}</td><td>{s.last}</td></tr>)}</tbody>
        </table>
      )}
      <h4>Would-be actions ({r.firings_total})</h4>
      <table class="grid" data-testid="backtest-firings">
        <thead><tr><th>Side</th><th>Time</th><th>Rule</th><th>Action</th><th>Target</th><th>Cause</th></tr></thead>
        <tbody>
          {r.firings.slice(0, 300).map((f: any) => (
            <tr class={`side-${f.side}`}>
              <td>{f.side === "both" ? "A and B" : f.side === "a" ? "only A" : "only B"}</td>
              <td>{iso(f.time)}</td><td>{f.rule}</td><td>{f.type}</td><td class="mono">{f.target}</td>
              <td>{f.event_id ? <a class="mono" href={`/events?id=${f.event_id}`} onClick={linkHandler(`/events?id=${f.event_id}`)}>{f.event_id}</a> : "-"}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
