/**
 * A client's startup parameters as the GUC settings a server connection must carry for it (pure logic).
 * In transaction mode server connections are shared, so the settings are applied with SQL before the client's
 * first statement on a connection whose settings differ.
 */

/** Startup keys that are not settings. */
const NOT_SETTINGS = new Set(['user', 'database', 'options', 'replication']);

/** Splits libpq's `options` the way the backend does (pg_split_opts): whitespace separates, backslash escapes. */
export function splitOptions(options: string): string[] {
  const out: string[] = [];
  let current = '';
  let inWord = false;
  for (let i = 0; i < options.length; i++) {
    const c = options[i];
    if (c === '\\' && i + 1 < options.length) {
      current += options[++i];
      inWord = true;
    } else if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      if (inWord) out.push(current);
      current = '';
      inWord = false;
    } else {
      current += c;
      inWord = true;
    }
  }
  if (inWord) out.push(current);
  return out;
}

/** `-c name=value`, `-cname=value` and `--name=value` from `options`; other switches are refused. */
export function settingsFromOptions(options: string): Map<string, string> {
  const words = splitOptions(options);
  const settings = new Map<string, string>();
  for (let i = 0; i < words.length; i++) {
    let word = words[i];
    if (word === '-c') {
      word = words[++i] ?? '';
    } else if (word.startsWith('-c')) {
      word = word.slice(2);
    } else if (word.startsWith('--')) {
      word = word.slice(2);
    } else {
      throw new RangeError(`unsupported option "${word}" in the startup packet's options: only -c name=value and --name=value are passed on`);
    }
    const eq = word.indexOf('=');
    if (eq <= 0) throw new RangeError(`invalid setting "${word}" in the startup packet's options: expected name=value`);
    settings.set(word.slice(0, eq).replaceAll('-', '_'), word.slice(eq + 1));
  }
  return settings;
}

/** The settings a client asked for at startup, sorted by name so that equal sets compare equal by key. */
export function clientSettings(params: ReadonlyMap<string, string>): Map<string, string> {
  const all = new Map<string, string>();
  for (const [name, value] of params) if (!NOT_SETTINGS.has(name)) all.set(name, value);
  const options = params.get('options');
  if (options !== undefined && options.trim() !== '') for (const [name, value] of settingsFromOptions(options)) all.set(name, value);
  return new Map([...all.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** A stable identity of a settings set: equal keys mean nothing needs to be applied. */
export function settingsKey(settings: ReadonlyMap<string, string>): string {
  return JSON.stringify([...settings.entries()]);
}

function literal(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** One simple query that resets a server connection's settings and applies `settings`. */
export function applySettingsSql(settings: ReadonlyMap<string, string>): string {
  const sets = [...settings.entries()].map(([name, value]) => `pg_catalog.set_config(${literal(name)}, ${literal(value)}, false)`);
  return sets.length === 0 ? 'RESET ALL' : `RESET ALL; SELECT ${sets.join(', ')}`;
}
