/**
 * pg_hba.conf's format, parsed into plain rules (the proxy's auth_hba_file, PgBouncer's option): read once when a
 * configuration is read, so a bad line stops the start or the RELOAD naming file:line and the fix. Pure data out:
 * the rules cross to worker threads and compare by JSON. Matching a login against them is the proxy's
 * (src/proxy/auth/hba.ts).
 *
 * Supported, as in PostgreSQL: `local`, `host`, `hostssl`, `hostnossl`; databases `all`, `sameuser`,
 * `replication` (the proxy has no replication connections: it never matches), names, comma lists, quoted names,
 * `@file`; users `all`, names, comma lists, `@file`; addresses `all`, CIDR, or address and mask; methods `trust`,
 * `reject`, `md5`, `scram-sha-256`, `cert`; `#` comments and a backslash continuing a line. What needs the
 * catalog (`+role`, `samerole`), name lookups (`samehost`, `samenet`, host names) or another method is refused
 * with the reason, never silently taken as something else.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

export type HbaType = 'local' | 'host' | 'hostssl' | 'hostnossl';
export type HbaMethod = 'trust' | 'reject' | 'md5' | 'scram-sha-256' | 'cert';

/** A database or user of a rule: a keyword, or a name compared exactly. */
export type HbaName = { kind: 'all' } | { kind: 'sameuser' } | { kind: 'replication' } | { kind: 'name'; name: string };

/** An address range: `all`, or the network's bytes (4 or 16) and its mask. */
export type HbaAddress = { kind: 'all' } | { kind: 'net'; bytes: number[]; mask: number[] };

export interface HbaRule {
  /** "file:line", for logs and messages. */
  where: string;
  type: HbaType;
  databases: HbaName[];
  users: HbaName[];
  /** null for local lines. */
  address: HbaAddress | null;
  method: HbaMethod;
}

export interface HbaRules {
  file: string;
  rules: HbaRule[];
}

/** A line that cannot be used: file:line, what is wrong, and the fix. */
export class HbaParseError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    problem: string,
  ) {
    super(`${file}:${line}: ${problem}`);
    this.name = 'HbaParseError';
  }
}

const METHODS: ReadonlySet<string> = new Set<HbaMethod>(['trust', 'reject', 'md5', 'scram-sha-256', 'cert']);
const UNSUPPORTED_METHODS: Record<string, string> = {
  password: 'sends the password in clear text; use scram-sha-256',
  peer: 'is not supported by the proxy (it cannot ask the kernel for the peer\'s user); use trust or scram-sha-256 on local lines',
  ident: 'is not supported by the proxy; use scram-sha-256 or cert',
  gss: 'is not supported by the proxy; use scram-sha-256 or cert',
  sspi: 'is not supported by the proxy; use scram-sha-256 or cert',
  ldap: 'is not supported by the proxy; use scram-sha-256 or cert',
  radius: 'is not supported by the proxy; use scram-sha-256 or cert',
  pam: 'is not supported by the proxy; use scram-sha-256 or cert',
  bsd: 'is not supported by the proxy; use scram-sha-256 or cert',
};

interface Token {
  text: string;
  /** Written in double quotes (at least partly): never a keyword. */
  quoted: boolean;
}

/** One field of a line: its comma-separated tokens. */
type Field = Token[];

/**
 * Splits one logical line into fields as PostgreSQL does: blanks separate fields, a comma right after a token
 * continues the field's list, double quotes make blanks, commas and `#` literal and keep a keyword a name.
 */
function splitFields(text: string, fail: (problem: string) => never): Field[] {
  const fields: Field[] = [];
  let field: Field = [];
  let pos = 0;
  const blank = (c: string | undefined): boolean => c === ' ' || c === '\t' || c === '\r';
  for (;;) {
    while (blank(text[pos])) pos++;
    if (pos >= text.length || text[pos] === '#') break;
    if (text[pos] === ',') fail(field.length > 0 ? 'an empty name in a comma-separated list: remove the extra comma' : 'a comma with nothing before it: remove it, or write the list without blanks before commas ("a,b")');
    let value = '';
    let quoted = false;
    let inQuote = false;
    while (pos < text.length) {
      const c = text[pos]!;
      if (inQuote) {
        if (c === '"') {
          if (text[pos + 1] === '"') {
            value += '"';
            pos += 2;
            continue;
          }
          inQuote = false;
        } else value += c;
        pos++;
        continue;
      }
      if (c === '"') {
        inQuote = true;
        quoted = true;
        pos++;
        continue;
      }
      if (blank(c) || c === ',' || c === '#') break;
      value += c;
      pos++;
    }
    if (inQuote) fail('a quoted name is not closed: add the closing double quote');
    field.push({ text: value, quoted });
    if (text[pos] === ',') {
      pos++;
      // The list goes on after the comma, blanks allowed; a comma at the end of the line is an error.
      while (blank(text[pos])) pos++;
      if (pos >= text.length || text[pos] === '#') fail('a comma-separated list ends with a comma: remove it or add the missing name');
      continue;
    }
    fields.push(field);
    field = [];
  }
  return fields;
}

/** A keyword: written without quotes, as the only element of its field or of the list. */
function isKeyword(token: Token, word: string): boolean {
  return !token.quoted && token.text === word;
}

export interface ParseHbaOptions {
  /** Reads an @file (default: the file system). */
  readFile?: (path: string) => string;
}

/** Parses pg_hba.conf text; `file` names it in errors and resolves @files. Throws HbaParseError for the first bad line. */
export function parseHba(text: string, file: string, options: ParseHbaOptions = {}): HbaRules {
  const read = options.readFile ?? ((p: string) => readFileSync(p, 'utf8'));
  const rules: HbaRule[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const first = i + 1;
    let logical = lines[i]!.replace(/\r$/, '');
    // A backslash at the end continues the line (PostgreSQL 16's rule); the error names the line it began on.
    while (logical.endsWith('\\') && i + 1 < lines.length) {
      logical = logical.slice(0, -1) + ' ' + lines[++i]!.replace(/\r$/, '');
    }
    const fail = (problem: string): never => {
      throw new HbaParseError(file, first, problem);
    };
    const fields = splitFields(logical, fail);
    if (fields.length === 0) continue;
    rules.push(parseRule(fields, `${file}:${first}`, file, fail, read));
  }
  if (rules.length === 0) {
    throw new HbaParseError(file, lines.length, 'the file holds no rule, so every client would be refused: add lines such as "host all all 127.0.0.1/32 scram-sha-256"');
  }
  return { file, rules };
}

function single(field: Field | undefined, what: string, fail: (problem: string) => never): Token {
  if (field === undefined) fail(`the line ends before the ${what}`);
  if (field.length !== 1) fail(`the ${what} cannot be a comma-separated list`);
  return field[0]!;
}

function parseRule(fields: Field[], where: string, file: string, fail: (problem: string) => never, read: (path: string) => string): HbaRule {
  const typeToken = single(fields[0], 'connection type', fail);
  const type = typeToken.text;
  if (type === 'hostgssenc' || type === 'hostnogssenc') {
    fail(`connection type ${type} is not supported: the proxy has no GSSAPI encryption; use host, hostssl or hostnossl`);
  }
  if (type !== 'local' && type !== 'host' && type !== 'hostssl' && type !== 'hostnossl') {
    if (type === 'include' || type === 'include_if_exists' || type === 'include_dir') fail(`${type} is not supported: put the rules in this file`);
    fail(`invalid connection type "${type}": use local, host, hostssl or hostnossl`);
  }
  if (fields[1] === undefined) fail('the line ends after the connection type: expected a database, a user, ' + (type === 'local' ? '' : 'an address, ') + 'and a method');
  const databases = parseNames(fields[1], 'database', file, fail, read);
  if (fields[2] === undefined) fail('the line ends after the database: expected a user, ' + (type === 'local' ? '' : 'an address, ') + 'and a method');
  const users = parseNames(fields[2], 'user', file, fail, read);
  let next = 3;
  let address: HbaAddress | null = null;
  if (type !== 'local') {
    const parsed = parseAddress(fields, next, fail);
    address = parsed.address;
    next = parsed.next;
  }
  const methodToken = single(fields[next], 'authentication method', fail);
  const method = methodToken.text;
  if (!METHODS.has(method)) {
    const why = UNSUPPORTED_METHODS[method];
    fail(why === undefined ? `invalid authentication method "${method}": use trust, reject, md5, scram-sha-256 or cert` : `authentication method "${method}" ${why}`);
  }
  if (method === 'cert' && type !== 'hostssl') fail('cert authentication is only supported on hostssl lines: write hostssl instead of ' + type);
  if (fields.length > next + 1) {
    const option = fields[next + 1]!.map((t) => t.text).join(',');
    fail(`authentication options are not supported (got "${option}"): remove them; cert already checks that the certificate's CN is the user`);
  }
  return { where, type, databases, users, address, method: method as HbaMethod };
}

function parseNames(field: Field, what: 'database' | 'user', file: string, fail: (problem: string) => never, read: (path: string) => string): HbaName[] {
  const names: HbaName[] = [];
  for (const token of field) {
    if (token.text === '' && !token.quoted) fail(`an empty ${what} name`);
    if (!token.quoted && token.text.startsWith('@')) {
      for (const name of readNameFile(token.text.slice(1), what, file, fail, read)) names.push({ kind: 'name', name });
      continue;
    }
    names.push(parseName(token, what, fail));
  }
  return names;
}

function parseName(token: Token, what: 'database' | 'user', fail: (problem: string) => never): HbaName {
  if (token.quoted) return { kind: 'name', name: token.text };
  const t = token.text;
  if (t === 'all') return { kind: 'all' };
  if (what === 'database') {
    if (t === 'sameuser') return { kind: 'sameuser' };
    if (t === 'replication') return { kind: 'replication' };
    if (t === 'samerole' || t === 'samegroup') {
      fail(`database keyword ${t} is not supported: the proxy does not read role memberships from PostgreSQL; list the databases by name`);
    }
  } else if (t.startsWith('+')) {
    fail(`group membership ("${t}") is not supported: the proxy does not read role memberships from PostgreSQL; list the users by name or in an @file`);
  }
  return { kind: 'name', name: t };
}

/** The names of an @file: blanks, commas and newlines separate them, `#` starts a comment. */
function readNameFile(name: string, what: string, file: string, fail: (problem: string) => never, read: (path: string) => string): string[] {
  if (name === '') fail(`"@" must be followed by a file name holding ${what} names`);
  const path = resolve(dirname(file), name);
  let text: string;
  try {
    text = read(path);
  } catch (e) {
    return fail(`the ${what} file ${path} could not be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): create it with one name per line`);
  }
  const names: string[] = [];
  for (const line of text.split('\n')) {
    for (const field of splitFields(line, (problem) => fail(`in ${path}: ${problem}`))) {
      for (const token of field) {
        if (!token.quoted && token.text.startsWith('@')) fail(`${path} includes another file (${token.text}): nested @files are not supported`);
        if (!token.quoted && (token.text === 'all' || token.text.startsWith('+'))) fail(`${path} holds the keyword "${token.text}": an @file may hold only names`);
        names.push(token.text);
      }
    }
  }
  return names;
}

function parseAddress(fields: Field[], at: number, fail: (problem: string) => never): { address: HbaAddress; next: number } {
  const token = single(fields[at], 'address', fail);
  const t = token.text;
  if (!token.quoted) {
    if (t === 'all') return { address: { kind: 'all' }, next: at + 1 };
    if (t === 'samehost' || t === 'samenet') {
      fail(`address keyword ${t} is not supported: write the addresses as CIDR ranges, e.g. 10.0.0.0/8 or 127.0.0.1/32`);
    }
  }
  const slash = t.indexOf('/');
  if (slash >= 0) {
    const bytes = parseIp(t.slice(0, slash));
    if (bytes === null) fail(`invalid IP address "${t.slice(0, slash)}": write an IPv4 or IPv6 address range, e.g. 10.0.0.0/8 or ::1/128`);
    const bitsText = t.slice(slash + 1);
    const bits = /^\d{1,3}$/.test(bitsText) ? Number(bitsText) : NaN;
    if (!(bits >= 0 && bits <= bytes.length * 8)) fail(`invalid CIDR mask in address "${t}": the prefix length must be 0 to ${bytes.length * 8}`);
    return { address: { kind: 'net', bytes: masked(bytes, prefixMask(bytes.length, bits)), mask: prefixMask(bytes.length, bits) }, next: at + 1 };
  }
  const bytes = parseIp(t);
  if (bytes === null) {
    fail(`invalid address "${t}": host names are not supported; write an IP address range in CIDR form, e.g. 10.0.0.0/8, or all`);
  }
  const maskField = fields[at + 1];
  const mask = maskField !== undefined && maskField.length === 1 ? parseIp(maskField[0]!.text) : null;
  if (mask === null) fail(`the address "${t}" has no mask: write it in CIDR form (e.g. ${t}/${bytes.length * 8}) or put the mask after it (e.g. ${bytes.length === 4 ? '255.255.255.255' : 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'})`);
  if (mask.length !== bytes.length) fail(`IP address "${t}" and mask "${maskField![0]!.text}" are not of the same family: both IPv4 or both IPv6`);
  return { address: { kind: 'net', bytes: masked(bytes, mask), mask }, next: at + 2 };
}

function prefixMask(length: number, bits: number): number[] {
  const mask: number[] = [];
  for (let i = 0; i < length; i++) {
    const left = bits - i * 8;
    mask.push(left >= 8 ? 0xff : left <= 0 ? 0 : (0xff << (8 - left)) & 0xff);
  }
  return mask;
}

function masked(bytes: number[], mask: number[]): number[] {
  return bytes.map((b, i) => b & mask[i]!);
}

/** An IPv4 address as 4 bytes, an IPv6 one as 16 (a zone after % dropped), or null. */
export function parseIp(text: string): number[] | null {
  if (text.includes(':')) return parseIpv6(text.replace(/%.*$/, ''));
  return parseIpv4(text);
}

function parseIpv4(text: string): number[] | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  const bytes: number[] = [];
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    bytes.push(n);
  }
  return bytes;
}

function parseIpv6(text: string): number[] | null {
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const groups = (s: string): number[] | null => {
    if (s === '') return [];
    const out: number[] = [];
    const parts = s.split(':');
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (i === parts.length - 1 && p.includes('.')) {
        const v4 = parseIpv4(p);
        if (v4 === null) return null;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
        continue;
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return null;
      out.push(parseInt(p, 16));
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (head === null || tail === null) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const all = [...head, ...new Array<number>(halves.length === 2 ? missing : 0).fill(0), ...tail];
  return all.flatMap((g) => [g >> 8, g & 0xff]);
}
