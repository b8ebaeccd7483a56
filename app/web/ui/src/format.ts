// Times, durations and states as people read them.

export const STATES = ["CRITICAL", "EXPIRED", "UNKNOWN", "WARNING", "OK"] as const;

export function iso(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "-";
  return new Date(ms).toISOString().replace("T", " ").replace("Z", "");
}

export function duration(ms: number): string {
  const s = Math.floor(Math.abs(ms) / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${s % 60 ? `${s % 60}s` : ""}`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${m % 60 ? `${m % 60}m` : ""}`;
  return `${Math.floor(h / 24)}d${h % 24 ? `${h % 24}h` : ""}`;
}

export function ago(ms: number | null | undefined, now = Date.now()): string {
  if (ms === null || ms === undefined) return "-";
  const delta = now - ms;
  return delta >= 0 ? `${duration(delta)} ago` : `in ${duration(delta)}`;
}

export function stateClass(state: string): string {
  return `st-${(state || "unknown").toLowerCase()}`;
}

export function tagsText(tags: Record<string, string> | undefined): string {
  if (!tags) return "";
  return Object.entries(tags)
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
}

export function identityPath(subject: string, name: string): string {
  return `/identity/${encodeURIComponent(subject)}/${encodeURIComponent(name)}`;
}

/** A metric value with at most 6 significant digits (2.8800000000000003 -> 2.88). */
export function num(value: unknown): string {
  return typeof value === "number" ? String(Number(value.toPrecision(6))) : String(value);
}

export function metricsText(metrics: Record<string, unknown> | undefined | null): string {
  return metrics ? Object.entries(metrics).map(([k, v]) => `${k}=${num(v)}`).join(" ") : "";
}
