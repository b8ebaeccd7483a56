// A small router on the History API: the path picks the page, the query string holds its filters
// (so a filtered board is a link). `navigate` pushes, `replaceQuery` updates filters in place.
import { useEffect, useState } from "preact/hooks";

const listeners = new Set<() => void>();

function notify() {
  listeners.forEach((l) => l());
}

window.addEventListener("popstate", notify);

export function navigate(to: string): void {
  if (to === location.pathname + location.search) return;
  history.pushState(null, "", to);
  notify();
  window.scrollTo(0, 0);
}

export function replaceQuery(params: Record<string, string | string[] | undefined>): void {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === "" || (Array.isArray(v) && v.length === 0)) continue;
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else q.set(k, v);
  }
  const text = q.toString();
  history.replaceState(null, "", location.pathname + (text ? `?${text}` : ""));
  notify();
}

export interface Location {
  path: string;
  query: URLSearchParams;
}

export function useLocation(): Location {
  const [, setTick] = useState(0);
  useEffect(() => {
    const l = () => setTick((t) => t + 1);
    listeners.add(l);
    return () => {
      listeners.delete(l);
    };
  }, []);
  return { path: location.pathname, query: new URLSearchParams(location.search) };
}

/** A link that navigates without reloading (ctrl/middle click still opens a new tab). */
export function linkHandler(href: string) {
  return (ev: MouseEvent) => {
    if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    ev.preventDefault();
    navigate(href);
  };
}
