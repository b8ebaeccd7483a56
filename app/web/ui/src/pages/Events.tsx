// Events: one by id (from the archive index and Kafka), and the index of matching identities over a range.
import { useEffect, useState } from "preact/hooks";
import { api } from "../api";
import { identityPath, iso } from "../format";
import { linkHandler, replaceQuery, useLocation } from "../router";

export function Events() {
  const loc = useLocation();
  const id = loc.query.get("id") || "";
  const [input, setInput] = useState(id);
  const [found, setFound] = useState<any>(null);
  const [error, setError] = useState("");
  const [form, setForm] = useState({ subject: loc.query.get("subject") || "", name: loc.query.get("name") || "", since: loc.query.get("since") || "1h" });
  const [list, setList] = useState<any[]>([]);
  useEffect(() => {
    setInput(id);
    if (!id) return setFound(null);
    api(`/events/${encodeURIComponent(id)}`).then((e) => { setFound(e); setError(""); }).catch((e) => { setFound(null); setError(e.message); });
  }, [id]);
  useEffect(() => {
    const q = loc.query;
    if (!q.get("subject") && !q.get("name")) return setList([]);
    api("/events", { subject: q.get("subject") || undefined, name: q.get("name") || undefined, since: q.get("since") || "1h", records: true, limit: 100 })
      .then((e) => setList(e.events))
      .catch((e) => setError(e.message));
  }, [loc.query.toString()]);
  return (
    <div>
      <form class="filters" onSubmit={(e) => { e.preventDefault(); replaceQuery({ id: input.trim() }); }}>
        <label>Event id <input class="wide" name="id" value={input} onInput={(e) => setInput((e.target as HTMLInputElement).value)} /></label>
        <button type="submit">Look up</button>
      </form>
      {error && <p class="error">{error}</p>}
      {found && (
        <div class="card">
          <p>
            <b>{found.type}</b> at {iso(found.time)} · {found.topic}[{found.partition}]@{found.offset} ·{" "}
            <a href={`/trace/${found.id}`} onClick={linkHandler(`/trace/${found.id}`)}>trace</a>
          </p>
          <pre class="json" data-testid="event-json">{JSON.stringify(found.event, null, 2)}</pre>
        </div>
      )}
      <form class="filters" onSubmit={(e) => { e.preventDefault(); replaceQuery(form); }}>
        <label>Subject <input value={form.subject} placeholder="glob" onInput={(e) => setForm({ ...form, subject: (e.target as HTMLInputElement).value })} /></label>
        <label>Name <input value={form.name} placeholder="glob" onInput={(e) => setForm({ ...form, name: (e.target as HTMLInputElement).value })} /></label>
        <label>Since <input class="short" value={form.since} onInput={(e) => setForm({ ...form, since: (e.target as HTMLInputElement).value })} /></label>
        <button type="submit">Find</button>
      </form>
      <table class="grid">
        <thead><tr><th>Time</th><th>Identity</th><th>Kind</th><th>Severity</th><th>Text</th><th>Id</th></tr></thead>
        <tbody>
          {list.map((e) => (
            <tr>
              <td>{iso(e.time)}</td>
              <td><a class="mono" href={identityPath(e.subject, e.name)} onClick={linkHandler(identityPath(e.subject, e.name))}>{e.subject}/{e.name}</a></td>
              <td>{e.record?.kind}</td>
              <td>{e.record?.severity ?? "-"}</td>
              <td>{e.record?.text}</td>
              <td><a class="mono" href={`/events?id=${e.id}`} onClick={linkHandler(`/events?id=${e.id}`)}>{e.id}</a></td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
