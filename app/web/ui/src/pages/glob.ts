// Shell-style globs (* ? [abc]) as the server matches them, for filtering live updates client-side.
const cache = new Map<string, RegExp>();

export function globMatch(pattern: string, value: string): boolean {
  let re = cache.get(pattern);
  if (!re) {
    let out = "";
    for (let i = 0; i < pattern.length; i++) {
      const c = pattern[i];
      if (c === "*") out += ".*";
      else if (c === "?") out += ".";
      else if (c === "[") {
        const end = pattern.indexOf("]", i + 1);
        if (end < 0) out += "\\[";
        else {
          let body = pattern.slice(i + 1, end);
          if (body.startsWith("!")) body = "^" + body.slice(1);
          out += `[${body.replace(/\\/g, "\\\\")}]`;
          i = end;
        }
      } else out += c.replace(/[.+^${}()|\\]/g, "\\$&");
    }
    re = new RegExp(`^${out}$`, "s");
    cache.set(pattern, re);
  }
  return re.test(value);
}
