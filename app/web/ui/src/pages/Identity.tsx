// One identity: its status and the workers' current record, its transitions with the event that
// caused each, its recent events, and a chart per metric over a chosen range with ARCHIVE events
// (deploys, puppet runs) of a chosen filter as markers on the same time axis.
import { useEffect, useMemo, useState } from "preact/hooks";
import { api, ApiError, type Status } from "../api";
import { Chart, type Marker } from "../components/Chart";
import { ago, iso, metricsText, stateClass, tagsText } from "../format";
import { subscribe } from "../live";
import { linkHandler, replaceQuery, useLocation } from "../router";

const RANGES: Record<string, number> = { "15m": 15 * 60e3, "1h": 3600e3, "6h": 6 * 3600e3, "24h": 24 * 3600e3 };

interface Window {
  metric: string;
  window_start: number;
  size_ms: number;
  count: number;
  mean: number | null;
  min: number | null;
  max: number | null;
  p95: number | null;
}

export function Identity({ subject, name }: { subject: string; name: string }) {
  const loc = useLocation();
  const rangeKey = loc.query.get("range") || "1h";
  const span = RANGES[rangeKey] || RANGES["1h"];
  const markerSubject = loc.query.get("msubject") ?? subject;
  const markerNames = loc.query.get("mname") ?? "deploy*,puppet*";
  const [detail, setDetail] = useState<any>(null);
  const [error, setError] = useState("");
  const [windows, setWindows] = useState<Window[] | null>(null);
  const [sizes, setSizes] = useState<number[]>([]);
  const [markers, setMarkers] = useState<Marker[]>([]);
  const [events, setEvents] = useState<any[]>([]);
  const [now, setNow] = useState(Date.now());
  const base = `/status/${encodeURIComponent(subject)}/${encodeURIComponent(name)}`;

  const loadDetail = () =>
    api(base)
      .then((d) => {
        setDetail(d);
        setError("");
      })
      .catch((e: ApiError) => setError(e.message));

  const loadCharts = async () => {
    const until = Date.now();
    const since = until - span;
    setNow(until);
    const info = await api("/info");
    const all: number[] = info.window_sizes_ms;
    setSizes(all);
    const window = span <= 3600e3 ? Math.min(...all) : Math.max(...all);
    const m = await api("/metrics", { subject, name, since: String(since), until: String(until), window: String(window) });
    setWindows(m.windows);
    const globs = markerNames.split(",").map((s: string) => s.trim()).filter(Boolean);
    const found: Marker[] = [];
    for (const glob of globs) {
      try {
        const ev = await api("/events", { subject: markerSubject || "*", name: glob, since: String(since), until: String(until), records: true, limit: 100 });
        for (const e of ev.events) {
          if (e.record && String(e.record.kind).toUpperCase() === "ARCHIVE") found.push({ time: e.time, label: `${e.name}${e.record.text ? ": " + e.record.text : ""}` });
        }
      } catch {
        // markers are extra: a worker that does not answer leaves them out
      }
    }
    setMarkers(found);
  };

  const loadEvents = async () => {
    const until = Date.now();
    try {
      const recent = await api("/events", { subject, name, since: String(until - 24 * 3600e3), until: String(until + 60e3), records: true, limit: 30 });
      setEvents(recent.events.filter((e: any) => e.subject === subject && e.name === name));
    } catch {
      setEvents([]);
    }
  };

  useEffect(() => {
    loadDetail();
    loadEvents();
  }, [subject, name]);

  useEffect(() => {
    loadCharts().catch((e) => setError(String(e.message || e)));
    const timer = setInterval(() => loadCharts().catch(() => undefined), 15000);
    return () => clearInterval(timer);
  }, [subject, name, span, markerSubject, markerNames]);

  useEffect(() => {
    const off1 = subscribe("status", (s: Status) => {
      if (s.subject === subject && s.name === name) {
        loadDetail();
        loadEvents();
      }
    });
    const off2 = subscribe("reset", () => loadDetail());
    return () => {
      off1();
      off2();
    };
  }, [subject, name]);

  const byMetric = useMemo(() => {
    const out = new Map<string, Window[]>();
    for (const w of windows || []) {
      if (!out.has(w.metric)) out.set(w.metric, []);
      out.get(w.metric)!.push(w);
    }
    return out;
  }, [windows]);

  const status: Status | null = detail?.status || detail?.current || null;
  const current = detail?.current;
  return (
    <div class="identity">
      <h2>
        <span class="mono">{subject}</span> / <span class="mono">{name}</span>{" "}
        {status && <span class={`badge big ${stateClass(status.state)}`} data-testid="identity-state">{status.state}{status.flapping ? " ⚡ flapping" : ""}</span>}
      </h2>
      {error && <p class="error">{error}</p>}
      {status && (
        <dl class="facts">
          <dt>since</dt>
          <dd>{iso(status.since)} ({ago(status.since)})</dd>
          <dt>last seen</dt>
          <dd>{iso(current?.last_seen ?? status.last_seen)} ({ago(current?.last_seen ?? status.last_seen)})</dd>
          <dt>events</dt>
          <dd>{current?.event_count ?? status.event_count} · transitions {current?.transition_count ?? status.transition_count}</dd>
          <dt>text</dt>
          <dd>{current?.text ?? status.text}</dd>
          <dt>tags</dt>
          <dd>{tagsText(current?.tags ?? status.tags) || "-"}</dd>
          <dt>last event</dt>
          <dd>{status.last_event_id ? <a href={`/events?id=${status.last_event_id}`} onClick={linkHandler(`/events?id=${status.last_event_id}`)} class="mono">{status.last_event_id}</a> : "-"}</dd>
        </dl>
      )}
      <section>
        <div class="toolbar">
          <b>Metrics</b>
          {Object.keys(RANGES).map((r) => (
            <button type="button" class={r === rangeKey ? "on" : ""} onClick={() => replaceQuery({ range: r, msubject: loc.query.get("msubject") ?? undefined, mname: loc.query.get("mname") ?? undefined })}>
              {r}
            </button>
          ))}
          <MarkerFilter subject={markerSubject} names={markerNames} range={rangeKey} />
          <span class="muted">windows of {sizes.length ? `${(span <= 3600e3 ? Math.min(...sizes) : Math.max(...sizes)) / 1000}s` : "-"} · {markers.length} marker(s)</span>
        </div>
        {windows === null ? <p class="muted">loading…</p> : byMetric.size === 0 ? <p class="muted">no metric windows in this range</p> : null}
        <div class="charts">
          {[...byMetric.entries()].map(([metric, ws]) => {
            const sorted = [...ws].sort((a, b) => a.window_start - b.window_start);
            return (
              <Chart
                key={metric}
                title={metric}
                times={sorted.map((w) => (w.window_start + w.size_ms / 2) / 1000)}
                mean={sorted.map((w) => w.mean)}
                min={sorted.map((w) => w.min)}
                max={sorted.map((w) => w.max)}
                p95={sorted.map((w) => w.p95)}
                markers={markers}
                range={[(now - span) / 1000, now / 1000]}
              />
            );
          })}
        </div>
      </section>
      <section>
        <h3>Transitions</h3>
        <table class="grid" data-testid="transitions">
          <thead>
            <tr><th>Time</th><th>From</th><th>To</th><th>Text</th><th>Cause</th></tr>
          </thead>
          <tbody>
            {(detail?.transitions || []).map((a: any) => (
              <tr>
                <td>{iso(a.time)}</td>
                <td><span class={`badge ${stateClass(a.from_state)}`}>{a.from_state}</span></td>
                <td><span class={`badge ${stateClass(a.to_state)}`}>{a.to_state}</span></td>
                <td>{a.text}</td>
                <td>{a.cause_event_id ? <a class="mono" href={`/trace/${a.cause_event_id}`} onClick={linkHandler(`/trace/${a.cause_event_id}`)}>{a.cause_event_id}</a> : "-"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
      <section>
        <h3>Recent events</h3>
        <table class="grid" data-testid="recent-events">
          <thead>
            <tr><th>Time</th><th>Kind</th><th>Severity</th><th>Text</th><th>Metrics</th><th>Id</th></tr>
          </thead>
          <tbody>
            {events.map((e: any) => (
              <tr>
                <td>{iso(e.time)}</td>
                <td>{e.record?.kind ?? "-"}</td>
                <td>{e.record?.severity ?? "-"}</td>
                <td>{e.record?.text ?? ""}</td>
                <td class="mono">{metricsText(e.record?.metrics)}</td>
                <td><a class="mono" href={`/trace/${e.id}`} onClick={linkHandler(`/trace/${e.id}`)}>{e.id}</a></td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
    </div>
  );
}

function MarkerFilter({ subject, names, range }: { subject: string; names: string; range: string }) {
  const [s, setS] = useState(subject);
  const [n, setN] = useState(names);
  return (
    <form class="inline" onSubmit={(e) => {
      e.preventDefault();
      replaceQuery({ range, msubject: s, mname: n });
    }}>
      markers: subject <input class="short" value={s} onInput={(e) => setS((e.target as HTMLInputElement).value)} /> name{" "}
      <input class="short" value={n} onInput={(e) => setN((e.target as HTMLInputElement).value)} /> <button type="submit">Show</button>
    </form>
  );
}
