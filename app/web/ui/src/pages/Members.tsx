// Members: hosts seen through heartbeats, alive or failed.
import { useEffect, useState } from "preact/hooks";
import { api } from "../api";
import { ago, identityPath, tagsText } from "../format";
import { subscribe } from "../live";
import { linkHandler } from "../router";

export function Members() {
  const [members, setMembers] = useState<any[]>([]);
  const [error, setError] = useState("");
  const load = () => api("/members").then((m) => setMembers(m.members)).catch((e) => setError(e.message));
  useEffect(() => {
    load();
    const off = subscribe("status", (s: any) => {
      if (s.name === "heartbeat") load();
    });
    return off;
  }, []);
  return (
    <div>
      {error && <p class="error">{error}</p>}
      <table class="grid" data-testid="members">
        <thead><tr><th>Host</th><th>State</th><th>Last heartbeat</th><th>Tags</th></tr></thead>
        <tbody>
          {members.map((m) => (
            <tr>
              <td><a class="mono" href={identityPath(m.host, "heartbeat")} onClick={linkHandler(identityPath(m.host, "heartbeat"))}>{m.host}</a></td>
              <td><span class={`badge ${m.state === "ALIVE" ? "st-ok" : "st-critical"}`}>{m.state.toLowerCase()}</span></td>
              <td>{ago(m.last_seen)}</td>
              <td>{tagsText(m.tags)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {!members.length && !error && <p class="muted">no hosts have sent heartbeats</p>}
    </div>
  );
}
