// The /api/v1 client: JSON in and out, the bearer token (if the user set one) on every call, and
// errors as ApiError carrying the server's message and the parameter it names.

export const API = "/api/v1";
const TOKEN_KEY = "vigil.token";

export class ApiError extends Error {
  constructor(public status: number, message: string, public parameter?: string, public errors?: string[]) {
    super(message);
  }
}

export function token(): string {
  return localStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value: string): void {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
}

type Params = Record<string, string | number | boolean | string[] | undefined | null>;

export function query(params: Params): string {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => q.append(key, v));
    else q.set(key, String(value));
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

export async function api<T = any>(path: string, params: Params = {}, init: RequestInit = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (init.body) headers["Content-Type"] = "application/json";
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  const resp = await fetch(`${API}${path}${query(params)}`, { ...init, headers: { ...headers, ...(init.headers as any) } });
  let body: any = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  if (!resp.ok) {
    throw new ApiError(resp.status, body?.error || `HTTP ${resp.status}`, body?.parameter, body?.errors);
  }
  return body as T;
}

export const post = <T = any>(path: string, body: unknown) => api<T>(path, {}, { method: "POST", body: JSON.stringify(body) });
export const del = <T = any>(path: string) => api<T>(path, {}, { method: "DELETE" });

export function enc(part: string): string {
  return encodeURIComponent(part);
}

export interface Status {
  subject: string;
  name: string;
  state: string;
  since: number;
  last_seen: number;
  last_event_id?: string;
  text?: string;
  event_count?: number;
  transition_count?: number;
  flapping: boolean;
  ttl?: number | null;
  tags: Record<string, string>;
  rev: number;
  deleted?: boolean;
}

export interface StatusPage {
  total: number;
  offset: number;
  limit: number;
  counts: Record<string, number>;
  flapping: number;
  revision: number;
  ready: boolean;
  items: Status[];
}
