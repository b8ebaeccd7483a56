// The status board: every identity as a row (flat table) or a tile (grouped by subject, name or a
// tag), coloured by state. Filters live in the URL. Rows come from the server a page at a time, for
// what is in view only; live status changes update rows in place at once, and a short while later
// the rows in view are fetched again (a change may move a row or bring a new one in). Nothing a
// live update does touches the filter form.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, type Status } from "../api";
import { VirtualList } from "../components/VirtualList";
import { ago, identityPath, STATES, stateClass, tagsText } from "../format";
import { subscribe } from "../live";
import { linkHandler, replaceQuery, useLocation } from "../router";
import { globMatch } from "./glob";

const PAGE = 100;
const ROW = 30;
const TILE = 170;
const REFRESH_MS = 150;
// at most one refetch of the rows in view per this long while changes stream in
const REFRESH_EVERY_MS = 500;

interface Filters {
  subject: string;
  name: string;
  states: string[];
  tags: string[];
  view: "table" | "groups";
  group: string;
  sort: string;
}

function readFilters(q: URLSearchParams): Filters {
  return {
    subject: q.get("subject") || "",
    name: q.get("name") || "",
    states: q.getAll("state"),
    tags: q.getAll("tag"),
    view: q.get("view") === "groups" ? "groups" : "table",
    group: q.get("group") || "subject",
    sort: q.get("sort") || "state",
  };
}

const RANK: Record<string, number> = { CRITICAL: 0, EXPIRED: 1, UNKNOWN: 2, WARNING: 3, OK: 4 };

/** Whether a status passes the board's filters (as the server would decide). */
function rowMatches(s: Status, f: Filters): boolean {
  if (s.deleted) return false;
  if (f.subject && !globMatch(f.subject, s.subject)) return false;
  if (f.name && !globMatch(f.name, s.name)) return false;
  if (f.states.length && !f.states.includes(s.state)) return false;
  for (const tag of f.tags) {
    const at = tag.indexOf("=");
    const value = s.tags?.[tag.slice(0, at)];
    if (at < 1 || value === undefined || !globMatch(tag.slice(at + 1), value)) return false;
  }
  return true;
}

/** The server's order of two rows for a sort (ties by subject, then name). */
function compareRows(a: Status, b: Status, sort: string): number {
  const field = sort.replace(/^-/, "");
  const key = (s: Status): (string | number)[] =>
    field === "state" ? [RANK[s.state] ?? 5, s.subject, s.name]
      : field === "name" ? [s.name, s.subject]
      : field === "since" ? [s.since, s.subject, s.name]
      : field === "last_seen" ? [s.last_seen, s.subject, s.name]
      : [s.subject, s.name];
  const ka = key(a), kb = key(b);
  for (let i = 0; i < ka.length; i++) {
    if (ka[i] < kb[i]) return sort.startsWith("-") ? 1 : -1;
    if (ka[i] > kb[i]) return sort.startsWith("-") ? -1 : 1;
  }
  return 0;
}

function filterParams(f: Filters) {
  return { subject: f.subject || undefined, name: f.name || undefined, state: f.states, tag: f.tags, sort: f.sort };
}

interface Line {
  kind: "group" | "items";
  group: string;
  size?: number;
  counts?: Record<string, number>;
  worst?: string;
  items?: Status[];
}

/** Rows (or lines) of the current query, fetched by page as they come into view. */
class PagedRows<T> {
  pages = new Map<number, T[]>();
  loading = new Set<number>();
  total = 0;
  generation = 0;
  constructor(private fetchPage: (offset: number, limit: number) => Promise<{ total: number; rows: T[] }>, private changed: () => void) {}

  reset() {
    this.pages.clear();
    this.loading.clear();
    this.generation++;
  }

  get(index: number): T | undefined {
    return this.pages.get(Math.floor(index / PAGE))?.[index % PAGE];
  }

  async ensure(start: number, end: number, force = false) {
    const first = Math.floor(Math.max(0, start) / PAGE);
    const last = Math.floor(Math.max(0, end) / PAGE);
    const wanted: number[] = [];
    for (let p = first; p <= last; p++) if (force || (!this.pages.has(p) && !this.loading.has(p))) wanted.push(p);
    if (!wanted.length) return;
    const generation = this.generation;
    wanted.forEach((p) => this.loading.add(p));
    try {
      const answers = await Promise.all(wanted.map((p) => this.fetchPage(p * PAGE, PAGE)));
      if (generation !== this.generation) return;
      if (force) this.pages.clear();
      answers.forEach((a, i) => {
        this.pages.set(wanted[i], a.rows);
        this.total = a.total;
      });
    } finally {
      wanted.forEach((p) => this.loading.delete(p));
    }
    this.changed();
  }
}

export function Board() {
  const loc = useLocation();
  const filters = useMemo(() => readFilters(loc.query), [loc.query.toString()]);
  const key = JSON.stringify(filters);
  const [tick, setTick] = useState(0);
  const [counts, setCounts] = useState<Record<string, number>>({});
  const [flapping, setFlapping] = useState(0);
  const [error, setError] = useState("");
  const [perLine, setPerLine] = useState(6);
  const [loadedAt, setLoadedAt] = useState(0);
  const range = useRef<[number, number]>([0, 40]);
  const boxRef = useRef<HTMLDivElement>(null);
  const refreshTimer = useRef<number | null>(null);
  const lastRefresh = useRef(0);

  const rows = useMemo(() => {
    const paged: PagedRows<Status | Line> = new PagedRows(async (offset, limit) => {
      if (filters.view === "groups") {
        const page = await api("/status/groups", { ...filterParams(filters), group_by: filters.group, per_line: perLine, offset, limit, group_order: "worst" });
        setCounts(page.counts);
        setFlapping(page.flapping);
        return { total: page.total_lines, rows: page.lines };
      }
      const page = await api("/status", { ...filterParams(filters), offset, limit });
      setCounts(page.counts);
      setFlapping(page.flapping);
      return { total: page.total, rows: page.items };
    }, () => setTick((t) => t + 1));
    return paged;
  }, [key, perLine]);

  const load = (force: boolean) => {
    lastRefresh.current = Date.now();
    rows
      .ensure(range.current[0], range.current[1], force)
      .then(() => {
        setError("");
        setLoadedAt(Date.now());
      })
      .catch((err) => setError(String(err.message || err)));
  };

  useEffect(() => {
    rows.reset();
    rows.total = 0;
    range.current = [0, 40];
    load(true);
  }, [rows]);

  useEffect(() => {
    const el = boxRef.current;
    if (!el) return;
    const measure = () => setPerLine(Math.max(1, Math.floor((el.clientWidth - 16) / TILE)));
    measure();
    const obs = new ResizeObserver(measure);
    obs.observe(el);
    return () => obs.disconnect();
  }, []);

  // Live: patch rows in view at once, then refetch what is in view (debounced).
  useEffect(() => {
    const schedule = () => {
      if (refreshTimer.current !== null) return;
      const wait = Math.max(REFRESH_MS, REFRESH_EVERY_MS - (Date.now() - lastRefresh.current));
      refreshTimer.current = window.setTimeout(() => {
        refreshTimer.current = null;
        load(true);
      }, wait);
    };
    const offStatus = subscribe("status", (s: Status) => {
      let patched = false;
      for (const page of rows.pages.values()) {
        for (let i = 0; i < page.length; i++) {
          const row = page[i] as any;
          if (row.kind === "items") {
            row.items.forEach((item: Status, j: number) => {
              if (item.subject === s.subject && item.name === s.name && s.rev >= item.rev) {
                row.items[j] = s;
                patched = true;
              }
            });
          } else if (row.subject === s.subject && row.name === s.name && s.rev >= row.rev) {
            page[i] = s;
            patched = true;
          }
        }
      }
      if (!patched && filters.view === "table" && rowMatches(s, filters)) {
        // a row new to this query: shown at once where it sorts within the page in view (the refetch
        // that follows puts every row where the server has it)
        const p = Math.floor(range.current[0] / PAGE);
        const page = rows.pages.get(p) as Status[] | undefined;
        if (page && page.length && (p === 0 || compareRows(s, page[0], filters.sort) > 0)) {
          const at = page.findIndex((r) => compareRows(s, r, filters.sort) < 0);
          if (at >= 0 || page.length < PAGE) {
            page.splice(at >= 0 ? at : page.length, 0, s);
            rows.total += 1;
            patched = true;
          }
        }
      }
      if (patched) setTick((t) => t + 1);
      schedule();
    });
    const offReset = subscribe("reset", () => load(true));
    return () => {
      offStatus();
      offReset();
      if (refreshTimer.current !== null) clearTimeout(refreshTimer.current);
      refreshTimer.current = null;
    };
  }, [rows]);

  const onRange = (start: number, end: number) => {
    range.current = [start, end];
    load(false);
  };

  const setFilters = (next: Partial<Filters>) => {
    const f = { ...filters, ...next };
    replaceQuery({
      subject: f.subject, name: f.name, state: f.states, tag: f.tags,
      view: f.view === "table" ? undefined : f.view, group: f.view === "groups" && f.group !== "subject" ? f.group : undefined,
      sort: f.sort === "state" ? undefined : f.sort,
    });
  };

  const toggleState = (state: string) => {
    const states = filters.states.includes(state) ? filters.states.filter((s) => s !== state) : [...filters.states, state];
    setFilters({ states });
  };

  const total = rows.total;
  return (
    <div class="board" ref={boxRef}>
      <FilterForm filters={filters} onApply={setFilters} />
      <div class="chips">
        {STATES.map((s) => (
          <button type="button" class={`chip ${stateClass(s)} ${filters.states.includes(s) ? "on" : ""}`} onClick={() => toggleState(s)} data-testid={`chip-${s}`}>
            {s} <b>{counts[s] ?? 0}</b>
          </button>
        ))}
        <span class="muted">
          {flapping ? `${flapping} flapping · ` : ""}
          {filters.view === "groups" ? `${total} lines` : `${total} identities`}
          {loadedAt ? ` · updated ${new Date(loadedAt).toLocaleTimeString()}` : ""}
        </span>
        {error && <span class="error">{error}</span>}
      </div>
      {filters.view === "table" ? (
        <div class="table board-table" data-testid="board" data-loaded={loadedAt} data-tick={tick}>
          <div class="thead row-grid">
            <span>State</span>
            <span>Subject</span>
            <span>Name</span>
            <span>Since</span>
            <span>Text</span>
            <span>Tags</span>
          </div>
          <VirtualList
            count={total}
            rowHeight={ROW}
            resetKey={key}
            onRange={onRange}
            height="calc(100vh - 190px)"
            row={(i) => <StatusRow row={rows.get(i) as Status | undefined} />}
          />
        </div>
      ) : (
        <div class="groups" data-testid="board" data-loaded={loadedAt} data-tick={tick}>
          <VirtualList
            count={total}
            rowHeight={ROW + 6}
            resetKey={key + perLine}
            onRange={onRange}
            height="calc(100vh - 170px)"
            row={(i) => <GroupLineView line={rows.get(i) as Line | undefined} groupBy={filters.group} />}
          />
        </div>
      )}
    </div>
  );
}

function StatusRow({ row }: { row: Status | undefined }) {
  if (!row) return <div class="row-grid placeholder">…</div>;
  const href = identityPath(row.subject, row.name);
  return (
    <a class={`row-grid srow ${stateClass(row.state)}`} href={href} onClick={linkHandler(href)} data-testid="status-row" data-state={row.state} data-subject={row.subject} data-name={row.name}>
      <span class={`badge ${stateClass(row.state)}`}>
        {row.state}
        {row.flapping ? " ⚡" : ""}
      </span>
      <span class="mono">{row.subject}</span>
      <span class="mono">{row.name}</span>
      <span title={new Date(row.since).toISOString()}>{ago(row.since)}</span>
      <span class="text" title={row.text}>{row.text}</span>
      <span class="tags">{tagsText(row.tags)}</span>
    </a>
  );
}

function GroupLineView({ line, groupBy }: { line: Line | undefined; groupBy: string }) {
  if (!line) return <div class="gline placeholder">…</div>;
  if (line.kind === "group") {
    return (
      <div class={`gline ghead ${stateClass(line.worst || "OK")}`}>
        <b class="mono">{line.group || `(no ${groupBy.replace("tag:", "tag ")})`}</b>
        <span class="muted"> {line.size} </span>
        {STATES.filter((s) => line.counts?.[s]).map((s) => (
          <span class={`mini ${stateClass(s)}`}>
            {s} {line.counts![s]}
          </span>
        ))}
      </div>
    );
  }
  return (
    <div class="gline tiles">
      {line.items!.map((s) => {
        const href = identityPath(s.subject, s.name);
        return (
          <a class={`tile ${stateClass(s.state)} ${s.flapping ? "flapping" : ""}`} href={href} onClick={linkHandler(href)} title={`${s.subject}/${s.name} ${s.state}${s.text ? ": " + s.text : ""}`} data-testid="status-tile" data-state={s.state}>
            {groupBy === "subject" ? s.name : `${s.subject}/${s.name}`}
            {s.flapping ? " ⚡" : ""}
          </a>
        );
      })}
    </div>
  );
}

/** The filter form keeps its own input state: live updates re-render the board, never this form's inputs. */
function FilterForm({ filters, onApply }: { filters: Filters; onApply: (f: Partial<Filters>) => void }) {
  const [subject, setSubject] = useState(filters.subject);
  const [name, setName] = useState(filters.name);
  const [tags, setTags] = useState(filters.tags.join(" "));
  const appliedKey = JSON.stringify([filters.subject, filters.name, filters.tags]);
  useEffect(() => {
    setSubject(filters.subject);
    setName(filters.name);
    setTags(filters.tags.join(" "));
  }, [appliedKey]);
  const apply = (ev: Event) => {
    ev.preventDefault();
    // the form's own values: a submit right after typing must not see a render behind
    const data = new FormData(ev.currentTarget as HTMLFormElement);
    const text = (key: string) => String(data.get(key) ?? "").trim();
    onApply({ subject: text("subject"), name: text("name"), tags: text("tags").split(/\s+/).filter(Boolean) });
  };
  return (
    <form class="filters" onSubmit={apply}>
      <label>
        Subject <input name="subject" value={subject} placeholder="glob, e.g. web*" onInput={(e) => setSubject((e.target as HTMLInputElement).value)} />
      </label>
      <label>
        Name <input name="name" value={name} placeholder="glob" onInput={(e) => setName((e.target as HTMLInputElement).value)} />
      </label>
      <label>
        Tags <input name="tags" value={tags} placeholder="role=db env=prod*" onInput={(e) => setTags((e.target as HTMLInputElement).value)} />
      </label>
      <button type="submit">Filter</button>
      <label>
        View{" "}
        <select name="view" value={filters.view} onChange={(e) => onApply({ view: (e.target as HTMLSelectElement).value as any })}>
          <option value="table">table</option>
          <option value="groups">groups</option>
        </select>
      </label>
      {filters.view === "groups" && (
        <label>
          Group by <GroupBy value={filters.group} onChange={(group) => onApply({ group })} />
        </label>
      )}
      <label>
        Sort{" "}
        <select name="sort" value={filters.sort} onChange={(e) => onApply({ sort: (e.target as HTMLSelectElement).value })}>
          <option value="state">state (worst first)</option>
          <option value="subject">subject</option>
          <option value="name">name</option>
          <option value="-since">latest change</option>
          <option value="since">oldest change</option>
        </select>
      </label>
    </form>
  );
}

function GroupBy({ value, onChange }: { value: string; onChange: (v: string) => void }) {
  const [tag, setTag] = useState(value.startsWith("tag:") ? value.slice(4) : "");
  return (
    <span>
      <select name="group" value={value.startsWith("tag:") ? "tag" : value} onChange={(e) => {
        const v = (e.target as HTMLSelectElement).value;
        onChange(v === "tag" ? `tag:${tag || "role"}` : v);
      }}>
        <option value="subject">subject</option>
        <option value="name">name</option>
        <option value="tag">tag</option>
      </select>
      {value.startsWith("tag:") && (
        <input class="short" value={tag} placeholder="tag key" onInput={(e) => setTag((e.target as HTMLInputElement).value)} onBlur={() => onChange(`tag:${tag || "role"}`)} />
      )}
    </span>
  );
}
