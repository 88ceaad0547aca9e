/**
 * Matching a login against auth_hba_file's rules (parsed by src/postgres/hba.ts) and the authentication method it
 * gets: first match wins, none or `reject` refuses with PostgreSQL's words.
 */
import { type HbaAddress, type HbaName, type HbaRule, type HbaRules, parseIp } from '../../postgres/hba.js';
import { PgProtocolError, SQLSTATE } from '../protocol/errors.js';

/** What a login is matched on. */
export interface HbaConnection {
  /** Came in on the Unix-domain socket. */
  local: boolean;
  /** Talks TLS. */
  ssl: boolean;
  /** The client's IP address as Node reports it (IPv4, IPv6 or IPv4-mapped IPv6); unused for local. */
  address: string | undefined;
  database: string;
  user: string;
}

function nameMatches(names: HbaName[], value: string, user: string): boolean {
  for (const n of names) {
    if (n.kind === 'all') return true;
    if (n.kind === 'sameuser' && value === user) return true;
    if (n.kind === 'name' && n.name === value) return true;
  }
  return false;
}

function netMatches(address: HbaAddress, client: number[]): boolean {
  if (address.kind === 'all') return true;
  let bytes = client;
  // A client on an IPv6 socket with an IPv4-mapped address (::ffff:a.b.c.d) is the IPv4 client a.b.c.d.
  if (address.bytes.length === 4 && client.length === 16 && isV4Mapped(client)) bytes = client.slice(12);
  if (bytes.length !== address.bytes.length) return false;
  for (let i = 0; i < bytes.length; i++) if ((bytes[i]! & address.mask[i]!) !== address.bytes[i]) return false;
  return true;
}

function isV4Mapped(b: number[]): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** The first rule that matches the connection, or null (PostgreSQL: first match wins, none means refused). */
export function matchHba(rules: HbaRules, conn: HbaConnection): HbaRule | null {
  const client = conn.local || conn.address === undefined ? null : parseIp(conn.address);
  for (const rule of rules.rules) {
    if (rule.type === 'local') {
      if (!conn.local) continue;
    } else {
      if (conn.local) continue;
      if (rule.type === 'hostssl' && !conn.ssl) continue;
      if (rule.type === 'hostnossl' && conn.ssl) continue;
      // An unknown address matches only `all`: never a range.
      if (rule.address!.kind !== 'all' && (client === null || !netMatches(rule.address!, client))) continue;
    }
    if (!nameMatches(rule.databases, conn.database, conn.user)) continue;
    if (!nameMatches(rule.users, conn.user, conn.user)) continue;
    return rule;
  }
  return null;
}

/** How a client logs in: a password exchange, none, or its TLS certificate. */
export type AuthMethod = 'trust' | 'md5' | 'scram-sha-256' | 'cert';

/**
 * The method for this login: auth_type's (one for every client) without rules, else the first matching rule's.
 * No matching line and `reject` refuse the client with PostgreSQL's words and SQLSTATE 28000.
 */
export function authMethodFor(authType: 'scram-sha-256' | 'md5' | 'trust' | 'hba', hba: HbaRules | null | undefined, conn: HbaConnection): AuthMethod {
  if (authType !== 'hba') return authType;
  // auth_type hba without rules cannot pass config validation; refusing is the safe answer anyway.
  const rule = hba === null || hba === undefined ? null : matchHba(hba, conn);
  const host = conn.local ? '[local]' : (conn.address ?? 'unknown');
  const encryption = conn.ssl ? 'SSL encryption' : 'no encryption';
  if (rule === null) {
    throw new PgProtocolError(SQLSTATE.INVALID_AUTHORIZATION_SPECIFICATION, `no pg_hba.conf entry for host "${host}", user "${conn.user}", database "${conn.database}", ${encryption}`);
  }
  if (rule.method === 'reject') {
    throw new PgProtocolError(SQLSTATE.INVALID_AUTHORIZATION_SPECIFICATION, `pg_hba.conf rejects connection for host "${host}", user "${conn.user}", database "${conn.database}", ${encryption}`);
  }
  return rule.method;
}
