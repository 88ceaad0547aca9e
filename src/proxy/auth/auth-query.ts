/**
 * PgBouncer's auth_query: secrets of users missing from auth_file are asked from the primary, over one
 * connection per database logged in as auth_user (lookups queue on it: a pool of size 1). Answers, including
 * "no such user", are cached for auth_query_cache_ttl so that a storm of logins asks the primary once; lookups
 * of the same user in flight share one query. The lookup is asynchronous: a client waiting for it blocks no one.
 *
 * VALID UNTIL is honoured as PostgreSQL does: a password whose expiry has passed is no password (the client
 * then fails with 28P01 like an unknown user). The query may return it as a third column.
 */
import type { Logger } from 'pino';
import type { AuthQuerySettings } from '../../config/proxy.js';
import { PgProtocolError, SQLSTATE } from '../protocol/errors.js';
import { MessageFramer } from '../protocol/framer.js';
import * as m from '../protocol/messages.js';
import { MessageWriter } from '../protocol/writer.js';
import { ServerConn } from '../pool/server-conn.js';
import type { ServerTls } from '../server-tls.js';
import type { Endpoint, Topology } from '../topology.js';
import { serverCredentials } from './credentials.js';

/** One user as auth_query describes it. */
export interface StoredUser {
  /** The stored secret (SCRAM, md5 or, rarely, a plain password); null: the role has no password. */
  secret: string | null;
  /** Epoch milliseconds the password stops working (±Infinity for ±infinity); null: never. */
  validUntil: number | null;
}

/**
 * Reads auth_query's result rows: none → unknown user; one → (name, secret[, valid until]); more is a broken
 * query (it must select one user by $1) and throws.
 */
export function storedUserFromRows(rows: readonly (readonly (string | null)[])[]): StoredUser | null {
  if (rows.length === 0) return null;
  if (rows.length > 1) throw new Error(`auth_query returned ${rows.length} rows for one user: it must select the one user named by $1`);
  const row = rows[0];
  if (row.length < 2) throw new Error(`auth_query returned ${row.length} column(s): it must return the user name and the secret (and optionally VALID UNTIL)`);
  const validUntil = row.length >= 3 && row[2] !== null ? parseTimestamp(row[2]) : null;
  return { secret: row[1], validUntil };
}

/** The secret to check a client against at `now`, or null (no such user, no password, or an expired one). */
export function usableSecret(user: StoredUser | null, now: number): string | null {
  if (user === null || user.secret === null || user.secret === '') return null;
  if (user.validUntil !== null && user.validUntil < now) return null;
  return user.secret;
}

const ISO_TIMESTAMP = /^(\d{4,})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(\.\d+)?(?:([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?)?( BC)?$/;

/**
 * A timestamp(tz) in PostgreSQL's ISO output (the auth connection asks for DateStyle ISO); without an offset
 * it is taken as UTC. Anything else throws: an expiry the proxy cannot read must not let a password pass.
 */
export function parseTimestamp(text: string): number {
  if (text === 'infinity') return Infinity;
  if (text === '-infinity') return -Infinity;
  const match = ISO_TIMESTAMP.exec(text);
  if (match === null) throw new Error(`auth_query's third column (VALID UNTIL) is not a timestamp: "${text}"`);
  if (match[12] !== undefined) return -Infinity;
  const [, year, month, day, hour, minute, second, fraction, sign, offH, offM, offS] = match;
  const utc = Date.UTC(Number(year), Number(month) - 1, Number(day), Number(hour), Number(minute), Number(second), fraction === undefined ? 0 : Number(fraction) * 1000);
  const offset = sign === undefined ? 0 : (sign === '-' ? -1 : 1) * ((Number(offH) * 60 + Number(offM ?? 0)) * 60 + Number(offS ?? 0)) * 1000;
  return utc - offset;
}

export interface AuthQueryOptions {
  settings: AuthQuerySettings;
  topology: Topology;
  connectTimeoutMs: number;
  serverTls: ServerTls | null;
  logger?: Logger;
  /** Close the auth connection after this long unused; default 60 s. */
  idleTimeoutMs?: number;
  now?: () => number;
}

interface CacheEntry {
  expiresAt: number;
  answer: Promise<StoredUser | null>;
}

/** Entries beyond this many make a lookup sweep out the expired ones (names clients made up cost memory). */
const CACHE_SWEEP_SIZE = 10_000;

export class AuthQuery {
  private readonly cache = new Map<string, CacheEntry>();
  private readonly connections = new Map<string, AuthQueryConnection>();
  private readonly now: () => number;

  constructor(private readonly options: AuthQueryOptions) {
    this.now = options.now ?? Date.now;
  }

  /**
   * The secret to check `user` against, asking the primary if the cache has no fresh answer; null for an unknown
   * user or an expired password. `database` is the one the client asked for (auth_dbname overrides it).
   * Rejects with a PgProtocolError that tells the client nothing about the cause (it is logged).
   */
  async lookup(user: string, database: string): Promise<string | null> {
    const dbname = this.options.settings.dbname ?? database;
    const key = `${dbname}\u0000${user}`;
    const now = this.now();
    let entry = this.cache.get(key);
    if (entry === undefined || entry.expiresAt <= now) {
      if (this.cache.size >= CACHE_SWEEP_SIZE) this.sweep(now);
      const answer = this.connection(dbname).run(user);
      const fresh: CacheEntry = { expiresAt: now + this.options.settings.cacheTtlMs, answer };
      entry = fresh;
      this.cache.set(key, fresh);
      answer.catch(() => {
        if (this.cache.get(key) === fresh) this.cache.delete(key);
      });
    }
    try {
      return usableSecret(await entry.answer, this.now());
    } catch (e) {
      this.options.logger?.error({ user, database: dbname, auth_user: this.options.settings.user, err: (e as Error).message }, 'auth_query failed');
      throw new PgProtocolError(SQLSTATE.CONNECTION_FAILURE, 'could not look up the password: auth_query failed', {
        hint: "The proxy's log says why.",
      });
    }
  }

  close(): void {
    for (const connection of this.connections.values()) connection.close();
    this.connections.clear();
    this.cache.clear();
  }

  private connection(dbname: string): AuthQueryConnection {
    let connection = this.connections.get(dbname);
    if (connection === undefined) {
      connection = new AuthQueryConnection(dbname, this.options);
      this.connections.set(dbname, connection);
    }
    return connection;
  }

  private sweep(now: number): void {
    for (const [key, entry] of this.cache) if (entry.expiresAt <= now) this.cache.delete(key);
  }
}

/** How often a lookup looks for a primary again while there is none. */
const NO_PRIMARY_RETRY_MS = 100;

/** auth_user's connection to the primary for one database; lookups run one after another on it. */
class AuthQueryConnection {
  private conn: ServerConn | null = null;
  private tail: Promise<unknown> = Promise.resolve();
  private idleTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly writer = new MessageWriter(256);
  private readonly onTopologyChange = (): void => {
    const primary = this.options.topology.primary();
    if (this.conn !== null && (primary === null || !sameEndpoint(primary, this.conn.endpoint))) this.drop();
  };

  constructor(
    private readonly dbname: string,
    private readonly options: AuthQueryOptions,
  ) {
    options.topology.on('change', this.onTopologyChange);
  }

  run(user: string): Promise<StoredUser | null> {
    const result = this.tail.then(() => this.runNow(user));
    this.tail = result.catch(() => undefined);
    return result;
  }

  close(): void {
    this.closed = true;
    this.options.topology.off('change', this.onTopologyChange);
    this.drop();
  }

  private async runNow(user: string): Promise<StoredUser | null> {
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    try {
      const conn = await this.connect();
      try {
        return storedUserFromRows(await this.query(conn, user));
      } catch (e) {
        if (e instanceof PgProtocolError && e.sqlstate === SQLSTATE.CONNECTION_FAILURE) this.drop();
        throw e;
      }
    } finally {
      this.idleTimer = setTimeout(() => this.drop(), this.options.idleTimeoutMs ?? 60_000);
      this.idleTimer.unref();
    }
  }

  /** The open connection to the current primary, or a new one (waiting for a primary up to the connect timeout). */
  private async connect(): Promise<ServerConn> {
    const deadline = Date.now() + this.options.connectTimeoutMs;
    let primary: Endpoint | null = this.options.topology.primary();
    while (primary === null) {
      if (this.closed) throw new PgProtocolError(SQLSTATE.CONNECTION_FAILURE, 'the proxy is shutting down');
      if (Date.now() >= deadline) throw new PgProtocolError(SQLSTATE.CONNECTION_FAILURE, 'no primary server is known to run auth_query on');
      await new Promise((resolve) => setTimeout(resolve, NO_PRIMARY_RETRY_MS));
      primary = this.options.topology.primary();
    }
    if (this.conn !== null && !this.conn.closed && sameEndpoint(this.conn.endpoint, primary)) return this.conn;
    this.drop();
    const { settings } = this.options;
    const conn = new ServerConn(primary);
    await conn.login({
      user: settings.user,
      database: this.dbname,
      credentials: serverCredentials(settings.secret, null),
      connectTimeoutMs: this.options.connectTimeoutMs,
      requirePrimary: true,
      tls: this.options.serverTls,
      // ISO timestamps in UTC: what parseTimestamp reads, whatever the server's own defaults.
      startupParams: { DateStyle: 'ISO, MDY', TimeZone: 'UTC', application_name: 'pgwarden-auth-query' },
      ownSocket: true,
    });
    conn.tcp.on('error', () => undefined);
    conn.tcp.on('close', () => {
      conn.closed = true;
    });
    if (this.closed) {
      conn.close();
      throw new PgProtocolError(SQLSTATE.CONNECTION_FAILURE, 'the proxy is shutting down');
    }
    this.conn = conn;
    return conn;
  }

  /** Runs auth_query with $1 = user (extended protocol, text results) and returns its rows. */
  private query(conn: ServerConn, user: string): Promise<(string | null)[][]> {
    const { query } = this.options.settings;
    const socket = conn.tcp;
    return new Promise((resolve, reject) => {
      const framer = new MessageFramer();
      const rows: (string | null)[][] = [];
      let error: Error | null = null;
      const finish = (e: Error | null): void => {
        clearTimeout(timer);
        socket.off('data', onData);
        socket.off('close', onClose);
        if (e === null) resolve(rows);
        else reject(e);
      };
      const onClose = (): void => finish(new PgProtocolError(SQLSTATE.CONNECTION_FAILURE, 'the server closed the auth_query connection'));
      const onData = (chunk: Buffer): void => {
        framer.push(chunk);
        try {
          while (framer.next()) {
            const t = framer.type;
            if (t === m.BackendType.DataRow) rows.push(m.decodeDataRow(framer.buffer, framer.bodyStart, framer.end));
            else if (t === m.BackendType.ErrorResponse) {
              const fields = m.decodeErrorFields(framer.buffer, framer.bodyStart, framer.end);
              error ??= new Error(`auth_query (${query}) failed on the primary as "${this.options.settings.user}": ${fields.code} ${fields.message}`);
            } else if (t === m.BackendType.ReadyForQuery) {
              finish(error);
              return;
            }
          }
        } catch (e) {
          conn.destroy();
          finish(new PgProtocolError(SQLSTATE.CONNECTION_FAILURE, `the server sent an invalid answer to auth_query: ${(e as Error).message}`));
        }
      };
      const timer = setTimeout(() => {
        conn.destroy();
        finish(new PgProtocolError(SQLSTATE.CONNECTION_FAILURE, `auth_query got no answer within ${this.options.connectTimeoutMs} ms`));
      }, this.options.connectTimeoutMs);
      socket.on('data', onData);
      socket.once('close', onClose);
      const w = this.writer;
      m.writeParse(w, '', query);
      m.writeBind(w, '', '', [user]);
      m.writeExecute(w, '');
      m.writeSync(w);
      socket.write(w.flush());
    });
  }

  private drop(): void {
    if (this.idleTimer !== null) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
    const conn = this.conn;
    this.conn = null;
    conn?.close();
  }
}

function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return a.host === b.host && a.port === b.port;
}
