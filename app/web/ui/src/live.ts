// The live stream (/api/v1/stream): one EventSource for the whole app, resumed by the browser with
// Last-Event-ID after a drop. Pages subscribe by kind; a "reset" (the server could not fill a gap,
// or restarted) tells every page to refetch what it shows.
import { API, token } from "./api";

export type Kind = "status" | "alert" | "action" | "result" | "suppressed" | "silence" | "reset";
type Listener = (data: any) => void;
export type Connection = "connecting" | "live" | "reconnecting";

const listeners = new Map<Kind, Set<Listener>>();
const connectionListeners = new Set<(c: Connection) => void>();
let source: EventSource | null = null;
let connection: Connection = "connecting";
let lastId = "";

function setConnection(c: Connection) {
  connection = c;
  connectionListeners.forEach((l) => l(c));
}

function dispatch(kind: Kind, data: any) {
  listeners.get(kind)?.forEach((l) => {
    try {
      l(data);
    } catch (err) {
      console.error("live listener failed", err);
    }
  });
}

export function connect(): void {
  if (source) return;
  const params = new URLSearchParams();
  const t = token();
  if (t) params.set("access_token", t);
  if (lastId) params.set("last_event_id", lastId);
  const q = params.toString();
  source = new EventSource(`${API}/stream${q ? "?" + q : ""}`);
  source.onopen = () => setConnection("live");
  source.onerror = () => {
    // The browser retries by itself (sending Last-Event-ID); a closed source we reopen ourselves.
    setConnection("reconnecting");
    if (source && source.readyState === EventSource.CLOSED) {
      source = null;
      setTimeout(connect, 2000);
    }
  };
  const kinds: Kind[] = ["status", "alert", "action", "result", "suppressed", "silence", "reset"];
  for (const kind of kinds) {
    source.addEventListener(kind, (ev) => {
      const msg = ev as MessageEvent;
      if (msg.lastEventId) lastId = msg.lastEventId;
      dispatch(kind, JSON.parse(msg.data));
    });
  }
  source.addEventListener("hello", (ev) => {
    const msg = ev as MessageEvent;
    if (msg.lastEventId) lastId = msg.lastEventId;
    setConnection("live");
  });
}

export function reconnect(): void {
  source?.close();
  source = null;
  connect();
}

export function subscribe(kind: Kind, listener: Listener): () => void {
  let set = listeners.get(kind);
  if (!set) listeners.set(kind, (set = new Set()));
  set.add(listener);
  return () => set!.delete(listener);
}

export function onConnection(listener: (c: Connection) => void): () => void {
  connectionListeners.add(listener);
  listener(connection);
  return () => connectionListeners.delete(listener);
}
