import { readdirSync, readFileSync } from 'node:fs';
import { chmod, chown, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { PgwardenError } from '../errors.js';
import type { PgObservation, ReplicationPeer } from './observation.js';
import type { Lsn } from '../cluster/types.js';
import {
  type ConfValue,
  type PgClientSsl,
  sslConninfoParams,
  sslEnvironment,
  renderPgHba,
  renderPgpass,
  renderPostgresqlConf,
  renderPrimaryConninfo,
  renderConninfo,
  renderSynchronousStandbyNames,
  slotNameFor,
} from './conf.js';
import { readControlData } from './controldata.js';
import { stopPostgresAfterDeadline } from './emergency-stop.js';
import { clearStaleLocks, livePostmasterPid } from './lock-files.js';
import { parseLsnOrNull } from './lsn.js';
import { type OsUser, runAsIdentity, runProgram, withSecretFile, writeFileAs } from './run.js';
import { scramSha256Verifier } from '../protocol/scram.js';

export interface Credentials {
  username: string;
  password: string;
}

/** Another member's PostgreSQL, as this server reaches it. */
export interface PeerAddress {
  name: string;
  host: string;
  port: number;
}

export interface PostgresServerOptions {
  /** Member name: application_name towards the primary, cluster_name, slot name on the primary. */
  name: string;
  dataDir: string;
  /** Default /usr/lib/postgresql/15/bin. */
  binDir?: string;
  /** listen_addresses. */
  host: string;
  port: number;
  /** The address other members and clients use to reach this server; defaults to `host`. */
  connectHost?: string;
  /** OS user PostgreSQL runs as when the agent is root; default 'postgres'. */
  runAs?: string;
  superuser: Credentials;
  /** The streaming role; its ssl* settings also apply to pg_basebackup. */
  replication: Credentials & PgClientSsl;
  /** The pg_rewind role; its ssl* settings apply to pg_rewind's connection to the source. */
  rewind: Credentials & PgClientSsl;
  parameters?: Record<string, ConfValue>;
  /** Networks (CIDR) besides loopback allowed in pg_hba.conf. */
  hbaExtra?: string[];
  /** Directory of the Unix socket, the server log and the replication password file; default `<dataDir>.run`. */
  runDir?: string;
  /** Default `<runDir>/postgresql.log`. */
  logFile?: string;
  /** Default 60. */
  startTimeoutSec?: number;
  /** How long a fast shutdown may take before escalating to immediate; default 60. */
  stopTimeoutSec?: number;
  /** Limit for pg_basebackup and pg_rewind; default 3600. */
  cloneTimeoutSec?: number;
  /** Limit of each probe query and of connecting; default 1000. */
  queryTimeoutMs?: number;
  /** Stream through a replication slot named after this member (the primary creates it); default true. */
  useSlots?: boolean;
  /** Told what was repaired on the way (stale lock files removed, orphaned processes ended), for the log. */
  onRepair?: (message: string) => void;
}

/**
 * pg_rewind ran and failed (as opposed to not getting that far: the source unreachable, a server still running).
 * Only this calls for a fresh clone.
 */
export class RewindFailedError extends PgwardenError {}

/** What pgwarden wrote last, kept in the data directory so it survives agent restarts. */
interface PersistedState {
  following: PeerAddress | null;
  synchronousStandbyNames: string[];
}

const STATE_FILE = 'pgwarden.state.json';
const EMPTY_STATE: PersistedState = { following: null, synchronousStandbyNames: [] };
const MAX_SOCKET_PATH = 107;

interface ProbeRow {
  in_recovery: boolean;
  primary_tli: number | null;
  checkpoint_tli: number | null;
  system_id: string | null;
  current_lsn: string | null;
  receive_lsn: string | null;
  replay_lsn: string | null;
  receiver_status: string | null;
  received_tli: number | null;
  pending_restart: boolean;
  replication: Array<{ name: string; state: string; syncState: string; flushLsn: string | null; replayLsn: string | null }>;
  slots: string[];
}

/**
 * One round trip for everything observe() needs from SQL. On a primary the timeline comes from the current WAL
 * file name, which changes at promotion, while pg_control_checkpoint() lags until the next checkpoint.
 */
const PROBE_SQL = `
SELECT pg_is_in_recovery() AS in_recovery,
  CASE WHEN pg_is_in_recovery() THEN NULL
       ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END AS primary_tli,
  (SELECT timeline_id FROM pg_control_checkpoint()) AS checkpoint_tli,
  (SELECT system_identifier::text FROM pg_control_system()) AS system_id,
  CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS current_lsn,
  pg_last_wal_receive_lsn()::text AS receive_lsn,
  pg_last_wal_replay_lsn()::text AS replay_lsn,
  r.status AS receiver_status,
  r.received_tli AS received_tli,
  (SELECT coalesce(bool_or(pending_restart), false) FROM pg_settings) AS pending_restart,
  (SELECT coalesce(json_agg(json_build_object('name', application_name, 'state', state, 'syncState', sync_state,
            'flushLsn', flush_lsn::text, 'replayLsn', replay_lsn::text) ORDER BY application_name), '[]'::json)
     FROM pg_stat_replication) AS replication,
  (SELECT coalesce(json_agg(slot_name::text ORDER BY slot_name), '[]'::json)
     FROM pg_replication_slots WHERE slot_type = 'physical') AS slots
FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver r ON true`;

function errnoCode(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A SQLSTATE that leaves the connection usable (a statement-level error such as a syntax error or a cancel). */
function isStatementError(e: unknown): boolean {
  const code = errnoCode(e);
  return e instanceof pg.DatabaseError && code !== undefined && !code.startsWith('57P') && !code.startsWith('08');
}

/**
 * Controls this agent's own PostgreSQL 15 server: files, process, SQL probes. It carries out what it is asked
 * and decides nothing; every method either does the whole job or throws a PgwardenError saying what failed.
 */
export class PostgresServer {
  readonly name: string;
  readonly dataDir: string;
  readonly binDir: string;
  readonly port: number;
  readonly listenHost: string;
  readonly connectHost: string;
  readonly runDir: string;
  readonly logFile: string;
  private readonly options: PostgresServerOptions;
  private readonly owner: OsUser | null;
  private parameters: Record<string, ConfValue>;
  private client: pg.Client | null = null;
  private connecting: Promise<pg.Client> | null = null;
  private cachedSystemId: string | null = null;

  constructor(options: PostgresServerOptions) {
    this.options = options;
    this.name = options.name;
    this.dataDir = path.resolve(options.dataDir);
    this.binDir = options.binDir ?? '/usr/lib/postgresql/15/bin';
    this.port = options.port;
    this.listenHost = options.host;
    this.connectHost = options.connectHost ?? options.host;
    this.runDir = path.resolve(options.runDir ?? `${this.dataDir}.run`);
    this.logFile = options.logFile ?? path.join(this.runDir, 'postgresql.log');
    this.parameters = { ...(options.parameters ?? {}) };
    this.owner = runAsIdentity(options.runAs ?? 'postgres');
    const socketPath = path.join(this.runDir, `.s.PGSQL.${this.port}`);
    if (socketPath.length > MAX_SOCKET_PATH) {
      throw new PgwardenError(
        'CONFIG_INVALID',
        `The Unix socket path ${socketPath} is longer than ${MAX_SOCKET_PATH} characters: choose a shorter runDir or data directory.`,
      );
    }
  }

  // ---------------------------------------------------------------- observation

  async observe(): Promise<PgObservation> {
    const dataDir = await this.dataDirState();
    const state = dataDir === 'initialized' ? await this.readState() : EMPTY_STATE;
    const running = dataDir === 'initialized' && this.postmasterPid() !== null;
    const observation: PgObservation = {
      dataDir,
      running,
      accepting: false,
      inRecovery: null,
      timeline: null,
      systemId: null,
      walPosition: null,
      receiveLsn: null,
      replayLsn: null,
      controlState: null,
      controlTimeline: null,
      checkpointLsn: null,
      following: state.following?.name ?? null,
      streaming: false,
      synchronousStandbyNames: [...state.synchronousStandbyNames],
      replication: [],
      slots: [],
      pendingRestart: false,
    };
    if (dataDir !== 'initialized') {
      this.cachedSystemId = null;
      return observation;
    }
    if (running) {
      try {
        const [row] = await this.query<ProbeRow>(PROBE_SQL);
        this.fillFromProbe(observation, row);
      } catch {
        // Not accepting connections (starting, shutting down, hung): the fields stay unknown, except that a
        // server with standby.signal is certainly a standby (PostgreSQL removes the file when it promotes), so a
        // replica that is still starting up is not mistaken for a possible primary.
        if (await this.hasStandbySignal()) observation.inRecovery = true;
      }
    } else {
      try {
        const control = await readControlData(this.binDir, this.dataDir, this.owner);
        observation.controlState = control.state;
        observation.controlTimeline = control.timeline;
        observation.checkpointLsn = control.checkpointLsn;
        if (control.systemId) this.cachedSystemId = control.systemId;
      } catch {
        // An unreadable pg_control leaves the fields unknown; the loop sees that.
      }
    }
    if (observation.systemId) this.cachedSystemId = observation.systemId;
    else if (this.cachedSystemId === null && running) {
      try {
        this.cachedSystemId = (await readControlData(this.binDir, this.dataDir, this.owner)).systemId;
      } catch {
        // Unknown for this cycle.
      }
    }
    observation.systemId = this.cachedSystemId;
    return observation;
  }

  private fillFromProbe(o: PgObservation, row: ProbeRow): void {
    o.accepting = true;
    o.inRecovery = row.in_recovery;
    o.systemId = row.system_id;
    o.pendingRestart = row.pending_restart;
    o.streaming = row.receiver_status === 'streaming';
    o.receiveLsn = parseLsnOrNull(row.receive_lsn);
    o.replayLsn = parseLsnOrNull(row.replay_lsn);
    o.controlTimeline = row.checkpoint_tli;
    if (row.in_recovery) {
      // Not streaming, the checkpoint's timeline lags behind what was already received and replayed (it moves
      // only at the next restartpoint); the newest WAL segment in pg_wal names the timeline received last.
      o.timeline = o.streaming && row.received_tli ? row.received_tli : Math.max(row.checkpoint_tli ?? 0, this.walFileTimeline()) || null;
      const positions = [o.receiveLsn, o.replayLsn].filter((l): l is number => l !== null);
      o.walPosition = positions.length > 0 ? Math.max(...positions) : null;
    } else {
      o.timeline = row.primary_tli;
      o.walPosition = parseLsnOrNull(row.current_lsn);
    }
    o.replication = row.replication.map(
      (r): ReplicationPeer => ({
        name: r.name,
        state: r.state,
        syncState: r.syncState,
        flushLsn: parseLsnOrNull(r.flushLsn),
        replayLsn: parseLsnOrNull(r.replayLsn),
      }),
    );
    o.slots = row.slots;
  }

  /** The highest timeline among the WAL segment files in pg_wal (0 when none can be read). */
  private walFileTimeline(): number {
    let max = 0;
    try {
      for (const name of readdirSync(path.join(this.dataDir, 'pg_wal'))) {
        if (name.length === 24 && /^[0-9A-F]{24}$/.test(name)) max = Math.max(max, parseInt(name.slice(0, 8), 16));
      }
    } catch {
      // Unreadable: unknown.
    }
    return max;
  }

  /** missing / empty (exists without PG_VERSION) / initialized (has PG_VERSION). */
  async dataDirState(): Promise<PgObservation['dataDir']> {
    try {
      await stat(this.dataDir);
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return 'missing';
      throw e;
    }
    try {
      await stat(path.join(this.dataDir, 'PG_VERSION'));
      return 'initialized';
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return 'empty';
      throw e;
    }
  }

  /** The postmaster's PID when postmaster.pid names a live PostgreSQL of this data directory, else null. */
  postmasterPid(): number | null {
    return livePostmasterPid(this.dataDir);
  }

  /** `<runDir>/.s.PGSQL.<port>.lock`, which PostgreSQL holds next to its socket. */
  private get socketLockFile(): string {
    return path.join(this.runDir, `.s.PGSQL.${this.port}.lock`);
  }

  /**
   * Removes what a postmaster killed with -9 leaves behind and PostgreSQL itself may take for a live server (see
   * lock-files.ts), so that the next start or pg_rewind works the first time. The server must be stopped.
   */
  private async clearStaleLocks(): Promise<void> {
    for (const line of await clearStaleLocks({ dataDir: this.dataDir, socketLock: this.socketLockFile })) {
      this.options.onRepair?.(`member ${this.name}: ${line}`);
    }
  }

  // ---------------------------------------------------------------- SQL

  /** Superuser connection parameters over the Unix socket (the server need not listen on TCP for the agent). */
  connectionConfig(): pg.ClientConfig {
    return {
      host: this.runDir,
      port: this.port,
      user: this.options.superuser.username,
      password: this.options.superuser.password,
      database: 'postgres',
      application_name: 'pgwarden',
    };
  }

  /** A libpq URL for the superuser at the address others use; the password is left out on purpose. */
  connectionString(): string {
    const host = this.connectHost.includes(':') ? `[${this.connectHost}]` : this.connectHost;
    return `postgresql://${encodeURIComponent(this.options.superuser.username)}@${host}:${this.port}/postgres`;
  }

  private get queryTimeoutMs(): number {
    return this.options.queryTimeoutMs ?? 1000;
  }

  private async sharedClient(): Promise<pg.Client> {
    if (this.client) return this.client;
    if (!this.connecting) {
      const timeout = this.queryTimeoutMs;
      const client = new pg.Client({
        ...this.connectionConfig(),
        connectionTimeoutMillis: timeout,
        statement_timeout: timeout,
        lock_timeout: timeout,
        // Client-side limit too: a SIGSTOPped server never answers, so statement_timeout alone cannot fire.
        query_timeout: timeout + 500,
      });
      client.on('error', () => this.dropClient(client));
      this.connecting = client
        .connect()
        .then(() => {
          this.client = client;
          return client;
        })
        .catch((e: unknown) => {
          void client.end().catch(() => undefined);
          throw e;
        })
        .finally(() => {
          this.connecting = null;
        });
    }
    return this.connecting;
  }

  private dropClient(client: pg.Client): void {
    if (this.client === client) this.client = null;
    void client.end().catch(() => undefined);
  }

  private wrapQueryError(e: unknown, sql: string): PgwardenError {
    const code = errnoCode(e);
    if (code === 'ENOENT' || code === 'ECONNREFUSED') {
      return new PgwardenError('PG_NOT_RUNNING', `PostgreSQL of member ${this.name} is not accepting connections on ${this.runDir}:${this.port}. Start it first.`, { cause: e });
    }
    const message = e instanceof Error ? e.message : String(e);
    const statement = sql.trim().split('\n')[0].slice(0, 80);
    return new PgwardenError(
      'PG_QUERY_FAILED',
      `Query "${statement}" on member ${this.name} failed${code ? ` (${code})` : ''}: ${message}. Check the server log ${this.logFile}.`,
      { cause: e },
    );
  }

  /**
   * Runs one statement as superuser over the agent's long-lived connection, with a short statement and
   * connection timeout so that a hung server cannot block the caller. The connection is re-opened after a failure.
   */
  async query<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
    let client: pg.Client | null = null;
    try {
      client = await this.sharedClient();
      const result = await client.query(sql, params);
      return result.rows as T[];
    } catch (e) {
      if (client && !isStatementError(e)) this.dropClient(client);
      throw this.wrapQueryError(e, sql);
    }
  }

  /** A dedicated connection for statements that may legitimately take long (promotion, checkpoint). */
  private async withLongConnection<T>(timeoutMs: number, use: (client: pg.Client) => Promise<T>): Promise<T> {
    const client = new pg.Client({ ...this.connectionConfig(), connectionTimeoutMillis: this.queryTimeoutMs, query_timeout: timeoutMs });
    client.on('error', () => undefined);
    try {
      await client.connect();
      return await use(client);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /** Ends the agent's connection. */
  async close(): Promise<void> {
    const client = this.client;
    this.client = null;
    if (client) await client.end().catch(() => undefined);
  }

  // ---------------------------------------------------------------- files

  private async readState(): Promise<PersistedState> {
    try {
      const parsed = JSON.parse(await readFile(path.join(this.dataDir, STATE_FILE), 'utf8')) as Partial<PersistedState>;
      return {
        following: parsed.following ?? null,
        synchronousStandbyNames: Array.isArray(parsed.synchronousStandbyNames) ? parsed.synchronousStandbyNames : [],
      };
    } catch {
      return { ...EMPTY_STATE };
    }
  }

  private async ensureOwnedDir(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
    if (this.owner) await chown(dir, this.owner.uid, this.owner.gid);
  }

  private get replicationPassfile(): string {
    return path.join(this.runDir, 'replication.pgpass');
  }

  /** Rewrites postgresql.conf, pg_hba.conf, the replication password file and the state file. */
  private async writeConfiguration(state: PersistedState): Promise<void> {
    await this.ensureOwnedDir(this.runDir);
    const following = state.following;
    if (following) {
      await writeFileAs(
        this.replicationPassfile,
        renderPgpass([{ user: this.options.replication.username, password: this.options.replication.password }]),
        this.owner,
      );
    }
    const conf = renderPostgresqlConf({
      memberName: this.name,
      listenAddresses: this.listenHost,
      port: this.port,
      socketDir: this.runDir,
      primary: following
        ? {
            conninfo: renderPrimaryConninfo({
              host: following.host,
              port: following.port,
              user: this.options.replication.username,
              passfile: this.replicationPassfile,
              applicationName: this.name,
              ssl: this.options.replication,
            }),
            slotName: this.options.useSlots === false ? null : slotNameFor(this.name),
          }
        : null,
      synchronousStandbyNames: renderSynchronousStandbyNames(state.synchronousStandbyNames),
      parameters: this.parameters,
    });
    const hba = renderPgHba({ replicationUser: this.options.replication.username, extraCidrs: this.options.hbaExtra ?? [] });
    await writeFileAs(path.join(this.dataDir, 'postgresql.conf'), conf, this.owner);
    await writeFileAs(path.join(this.dataDir, 'pg_hba.conf'), hba, this.owner);
    await writeFileAs(path.join(this.dataDir, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`, this.owner);
  }

  private async setStandbySignal(present: boolean): Promise<void> {
    const file = path.join(this.dataDir, 'standby.signal');
    if (present) await writeFileAs(file, '', this.owner);
    else await rm(file, { force: true });
  }

  private async hasStandbySignal(): Promise<boolean> {
    try {
      await stat(path.join(this.dataDir, 'standby.signal'));
      return true;
    } catch {
      return false;
    }
  }

  /** Creates the data directory (0700, owned by the PostgreSQL user) and clears leftovers of a non-cluster. */
  private async prepareEmptyDataDir(operation: string): Promise<void> {
    const state = await this.dataDirState();
    if (state === 'initialized') {
      throw new PgwardenError(
        'PG_COMMAND_FAILED',
        `Cannot ${operation}: ${this.dataDir} already holds a PostgreSQL cluster. Reinitialize the member (wipe) first if it should be replaced.`,
      );
    }
    await mkdir(path.dirname(this.dataDir), { recursive: true });
    await this.ensureOwnedDir(this.dataDir);
    for (const entry of await readdir(this.dataDir)) {
      await rm(path.join(this.dataDir, entry), { recursive: true, force: true });
    }
    await this.ensureOwnedDir(this.runDir);
    this.cachedSystemId = null;
  }

  private bin(program: string): string {
    return path.join(this.binDir, program);
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * Creates a new cluster: initdb (checksums, SCRAM), pgwarden's configuration, start as primary, the
   * replication and rewind roles. Returns the system identifier. A failed bootstrap leaves the data directory
   * empty again, since a half-made cluster is of no use.
   */
  async bootstrap(): Promise<string> {
    await this.prepareEmptyDataDir('bootstrap');
    try {
      await withSecretFile(`${this.options.superuser.password}\n`, this.owner, (pwfile) =>
        runProgram(
          this.bin('initdb'),
          [
            '-D', this.dataDir,
            '-U', this.options.superuser.username,
            `--pwfile=${pwfile}`,
            '--auth=scram-sha-256',
            '--encoding=UTF8',
            '--locale=C.UTF-8',
            '--data-checksums',
          ],
          { timeoutMs: 300_000, runAs: this.owner, hint: `Check that ${this.dataDir} is writable by the PostgreSQL OS user and the disk has space.` },
        ),
      );
      await this.start('primary', null);
      await this.createRoles();
      const [row] = await this.query<{ system_id: string }>('SELECT system_identifier::text AS system_id FROM pg_control_system()');
      this.cachedSystemId = row.system_id;
      return row.system_id;
    } catch (e) {
      if (this.postmasterPid() !== null) await this.stop('immediate').catch(() => undefined);
      await this.wipe().catch(() => undefined);
      throw e;
    }
  }

  private async createRoles(): Promise<void> {
    const { replication, rewind, superuser } = this.options;
    const ensureRole = async (credentials: Credentials, attributes: string): Promise<void> => {
      if (credentials.username === superuser.username) return;
      const role = pg.escapeIdentifier(credentials.username);
      const verifier = pg.escapeLiteral(scramSha256Verifier(credentials.password));
      const exists = await this.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [credentials.username]);
      const verb = exists.length > 0 ? 'ALTER' : 'CREATE';
      await this.query(`${verb} ROLE ${role} WITH ${attributes} PASSWORD ${verifier}`);
    };
    await ensureRole(replication, 'LOGIN REPLICATION');
    await ensureRole(rewind, 'LOGIN');
    if (rewind.username !== superuser.username) {
      // The functions pg_rewind calls on its source (PostgreSQL 15 documentation, pg_rewind).
      const role = pg.escapeIdentifier(rewind.username);
      for (const fn of [
        'pg_catalog.pg_ls_dir(text, boolean, boolean)',
        'pg_catalog.pg_stat_file(text, boolean)',
        'pg_catalog.pg_read_binary_file(text)',
        'pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)',
      ]) {
        await this.query(`GRANT EXECUTE ON FUNCTION ${fn} TO ${role}`);
      }
    }
  }

  /**
   * Makes this member a copy of `from` with pg_basebackup, configured to follow it (standby.signal, slot named
   * after this member). Does not start the server.
   */
  async clone(from: PeerAddress): Promise<void> {
    await this.prepareEmptyDataDir('clone');
    try {
      await this.basebackup(from, this.dataDir);
      await this.writeConfiguration({ ...(await this.readState()), following: from, synchronousStandbyNames: [] });
      await this.setStandbySignal(true);
    } catch (e) {
      // A partial copy must not look like an initialized cluster.
      await this.wipe().catch(() => undefined);
      throw e;
    }
  }

  /**
   * Replaces this member's data with a fresh copy of `from` (reinitialize). The copy is made beside the data
   * directory and swapped in only once complete: an unreachable or failing source never leaves this member
   * without its data. The server must be stopped.
   */
  async reclone(from: PeerAddress): Promise<void> {
    if (this.postmasterPid() !== null) {
      throw new PgwardenError('PG_COMMAND_FAILED', `Cannot reinitialize member ${this.name} while PostgreSQL runs: stop it first.`);
    }
    const side = `${this.dataDir}.reclone`;
    const old = `${this.dataDir}.old`;
    await rm(side, { recursive: true, force: true });
    await mkdir(side, { mode: 0o700 });
    if (this.owner) await chown(side, this.owner.uid, this.owner.gid);
    try {
      await this.basebackup(from, side);
    } catch (e) {
      await rm(side, { recursive: true, force: true });
      throw e;
    }
    await this.close();
    this.cachedSystemId = null;
    await rm(old, { recursive: true, force: true });
    await rename(this.dataDir, old).catch((e: unknown) => {
      if (errnoCode(e) !== 'ENOENT') throw e;
    });
    await rename(side, this.dataDir);
    await rm(old, { recursive: true, force: true });
    await this.writeConfiguration({ ...(await this.readState()), following: from, synchronousStandbyNames: [] });
    await this.setStandbySignal(true);
  }

  private async basebackup(from: PeerAddress, target: string): Promise<void> {
    const passfile = renderPgpass([{ user: this.options.replication.username, password: this.options.replication.password }]);
    await withSecretFile(passfile, this.owner, (file) =>
      runProgram(
        this.bin('pg_basebackup'),
        ['-D', target, '-h', from.host, '-p', String(from.port), '-U', this.options.replication.username, '--no-password', '-X', 'stream', '-c', 'fast'],
        {
          timeoutMs: (this.options.cloneTimeoutSec ?? 3600) * 1000,
          runAs: this.owner,
          env: { PGPASSFILE: file, PGAPPNAME: `pgwarden-clone-${this.name}`, ...sslEnvironment(this.options.replication) },
          hint: `Check that member ${from.name} (${from.host}:${from.port}) is running and accepts replication connections from this host.`,
        },
      ),
    );
  }


  /**
   * Starts the server as a primary or as a replica of `follow` (null: a replica with no upstream yet). Waits until
   * it accepts connections, at most startTimeoutSec. Calling it on a running server of the same role only
   * rewrites the configuration and reloads.
   */
  async start(role: 'primary' | 'replica', follow: PeerAddress | null): Promise<void> {
    if ((await this.dataDirState()) !== 'initialized') {
      throw new PgwardenError('PG_COMMAND_FAILED', `Cannot start member ${this.name}: ${this.dataDir} holds no PostgreSQL cluster. Bootstrap or clone it first.`);
    }
    const state = await this.readState();
    const next: PersistedState = { ...state, following: role === 'replica' ? follow : null };
    if (this.postmasterPid() !== null) {
      if ((await this.hasStandbySignal()) !== (role === 'replica')) {
        throw new PgwardenError('PG_COMMAND_FAILED', `Cannot start member ${this.name} as ${role}: it is already running in the other role. Stop it first.`);
      }
      await this.writeConfiguration(next);
      await this.reload();
      return;
    }
    // First: a server found still running in the data directory must not even get its files rewritten.
    await this.clearStaleLocks();
    await this.writeConfiguration(next);
    await this.setStandbySignal(role === 'replica');
    const startTimeoutSec = this.options.startTimeoutSec ?? 60;
    try {
      await runProgram(this.bin('pg_ctl'), ['start', '-D', this.dataDir, '-w', '-t', String(startTimeoutSec), '-l', this.logFile], {
        // pg_ctl gives up by itself after -t; the extra margin only guards against pg_ctl hanging.
        timeoutMs: (startTimeoutSec + 15) * 1000,
        runAs: this.owner,
        hint: `See the server log ${this.logFile}.`,
      });
    } catch (e) {
      // pg_ctl only says "could not start server"; the reason (port in use, bad setting...) is in the log.
      if (e instanceof PgwardenError) {
        throw new PgwardenError(e.code, `${e.message} Server log: ${await this.logTail(5)}`, { cause: e });
      }
      throw e;
    }
  }

  private async logTail(lines: number): Promise<string> {
    try {
      const file = await open(this.logFile, 'r');
      try {
        const { size } = await file.stat();
        const length = Math.min(size, 8192);
        const buffer = Buffer.alloc(length);
        await file.read(buffer, 0, length, size - length);
        return buffer.toString('utf8').trimEnd().split('\n').slice(-lines).join(' | ');
      } finally {
        await file.close();
      }
    } catch {
      return '(no log)';
    }
  }

  /** Stops the server (no-op when stopped). A fast shutdown that does not finish in time escalates to immediate. */
  async stop(mode: 'fast' | 'immediate'): Promise<void> {
    await this.close();
    if (this.postmasterPid() === null) return;
    const stopTimeoutSec = mode === 'fast' ? (this.options.stopTimeoutSec ?? 60) : 15;
    const pgCtlStop = (m: string, seconds: number) =>
      runProgram(this.bin('pg_ctl'), ['stop', '-D', this.dataDir, '-m', m, '-w', '-t', String(seconds)], {
        timeoutMs: (seconds + 10) * 1000,
        runAs: this.owner,
        hint: `See the server log ${this.logFile}.`,
      });
    try {
      await pgCtlStop(mode, stopTimeoutSec);
      return;
    } catch (e) {
      if (this.postmasterPid() === null) return;
      if (mode === 'fast') {
        try {
          await pgCtlStop('immediate', 15);
          return;
        } catch {
          // Fall through to SIGKILL below.
        }
      }
      if (this.postmasterPid() === null) return;
      // A stopped (SIGSTOP) or wedged postmaster ignores SIGQUIT; its children exit once they see it died.
      const pid = this.postmasterPid();
      if (pid !== null) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Gone meanwhile.
        }
      }
      for (let i = 0; i < 50 && this.postmasterPid() !== null; i++) await sleep(100);
      if (this.postmasterPid() !== null) {
        throw new PgwardenError('PG_COMMAND_FAILED', `PostgreSQL of member ${this.name} did not stop: ${(e as Error).message}`, { cause: e });
      }
    }
  }

  /**
   * Synchronous on purpose (the lease watchdog calls it from a timer and must not wait for anything): a fast
   * shutdown (SIGINT: the postmaster at once refuses new connections and ends the open ones); `late` (the deadline
   * passed while this host was not running) or a stopped postmaster: every process killed at once, see
   * stopPostgresAfterDeadline. Returns what was done, or null when no PostgreSQL ran.
   */
  emergencyStop(late = false): string | null {
    return stopPostgresAfterDeadline(this.dataDir, late);
  }

  /** Promotes a running replica (call checkpoint() next, see there). */
  async promote(options: { timelinesTaken?: number } = {}): Promise<void> {
    if (this.postmasterPid() === null) {
      throw new PgwardenError('PG_NOT_RUNNING', `Cannot promote member ${this.name}: PostgreSQL is not running. Start it as a replica first.`);
    }
    const reserved = await this.reserveTimelines(options.timelinesTaken ?? 0);
    try {
      await this.runPromotion();
    } catch (e) {
      await this.releaseTimelines(reserved);
      throw e;
    }
    await this.writeConfiguration({ ...(await this.readState()), following: null });
    await this.reload();
  }

  /**
   * CHECKPOINT, run after a promotion: until it completes pg_control still names the old timeline, and a
   * pg_rewind of the former primary against this server would find nothing to rewind.
   */
  async checkpoint(): Promise<void> {
    await this.withLongConnection(600_000, (client) => client.query('CHECKPOINT')).catch((e: unknown) => {
      throw this.wrapQueryError(e, 'CHECKPOINT');
    });
  }

  /** pg_promote(), or pg_ctl promote when the query fails; throws unless the server left recovery. */
  private async runPromotion(): Promise<void> {
    let promoted = false;
    try {
      promoted = await this.withLongConnection(70_000, async (client) => {
        const result = await client.query<{ promoted: boolean }>('SELECT pg_promote(true, 60) AS promoted');
        return result.rows[0].promoted;
      });
    } catch (e) {
      if (e instanceof pg.DatabaseError && e.code === '55000') {
        // "recovery is not in progress": already a primary.
        promoted = true;
      } else {
        await runProgram(this.bin('pg_ctl'), ['promote', '-D', this.dataDir, '-w', '-t', '60'], {
          timeoutMs: 75_000,
          runAs: this.owner,
          hint: `See the server log ${this.logFile}.`,
        });
        promoted = true;
      }
    }
    if (!promoted) {
      throw new PgwardenError('TIMEOUT', `Member ${this.name} did not finish promotion within 60 s. See the server log ${this.logFile}.`);
    }
  }

  /**
   * PostgreSQL numbers the timeline a promotion starts one past the newest timeline history file it finds in
   * pg_wal (findNewestTimeLine probes N+1, N+2, ... while the file exists). A server that never received the
   * newest promotion's history file would reuse that promotion's number. An empty history file for each
   * missing timeline up to `upTo` makes it pick upTo + 1. Empty, such a file names no parent, so a standby's
   * rescan for a newer timeline finds it "not a child" of its own and does not switch to it.
   */
  private async reserveTimelines(upTo: number): Promise<string[]> {
    const created: string[] = [];
    for (let tl = 2; tl <= upTo; tl++) {
      const file = path.join(this.dataDir, 'pg_wal', `${tl.toString(16).toUpperCase().padStart(8, '0')}.history`);
      try {
        const handle = await open(file, 'wx', 0o600);
        await handle.close();
        if (this.owner) await chown(file, this.owner.uid, this.owner.gid);
        created.push(file);
      } catch (e) {
        if (errnoCode(e) !== 'EEXIST') throw e;
      }
    }
    return created;
  }

  /** A promotion that did not happen must not leave empty history files for timelines this standby may yet follow. */
  private async releaseTimelines(files: string[]): Promise<void> {
    for (const file of files) await rm(file, { force: true });
  }

  /** Points a replica at `leader` (null: no upstream) and reloads; primary_conninfo is reloadable in PostgreSQL 15. */
  async follow(leader: PeerAddress | null): Promise<void> {
    await this.writeConfiguration({ ...(await this.readState()), following: leader });
    if (this.postmasterPid() !== null) await this.reload();
  }

  /**
   * Rewinds the stopped server to `from`'s timeline with pg_rewind (which first runs crash recovery when the
   * server was not shut down cleanly), then configures it to follow `from`. Throws RewindFailedError when pg_rewind
   * ran and failed; the data directory then has its recovery signal files back and the next attempt can run.
   */
  async rewind(from: PeerAddress): Promise<void> {
    if (this.postmasterPid() !== null) {
      throw new PgwardenError('PG_COMMAND_FAILED', `Cannot rewind member ${this.name} while PostgreSQL runs: stop it first.`);
    }
    if ((await this.dataDirState()) !== 'initialized') {
      throw new PgwardenError('PG_COMMAND_FAILED', `Cannot rewind member ${this.name}: ${this.dataDir} holds no cluster. Clone it instead.`);
    }
    // pg_rewind's crash recovery is a single-user postgres: it trips over the same stale locks as pg_ctl start.
    await this.clearStaleLocks();
    const signals = await this.takeRecoverySignals();
    const { username, password } = this.options.rewind;
    const source = renderConninfo({
      host: from.host,
      port: from.port,
      user: username,
      dbname: 'postgres',
      connect_timeout: 5,
      ...sslConninfoParams(this.options.rewind),
    });
    try {
      // Without a WAL archive there is nothing for --restore-target-wal to fetch: the WAL pg_rewind reads must still
      // be in pg_wal (wal_keep_size, and the slot the promoted member streamed through on this former primary).
      await withSecretFile(renderPgpass([{ user: username, password }]), this.owner, (file) =>
        runProgram(this.bin('pg_rewind'), [`--target-pgdata=${this.dataDir}`, `--source-server=${source}`], {
          timeoutMs: (this.options.cloneTimeoutSec ?? 3600) * 1000,
          runAs: this.owner,
          env: { PGPASSFILE: file, PGAPPNAME: `pgwarden-rewind-${this.name}` },
          hint: `Rewinding from member ${from.name} (${from.host}:${from.port}) failed: reinitialize this member by cloning it.`,
        }),
      );
    } catch (e) {
      await this.putRecoverySignals(signals);
      if (e instanceof PgwardenError && (e.code === 'PG_COMMAND_FAILED' || e.code === 'TIMEOUT')) {
        throw new RewindFailedError(e.code, e.message, { cause: e });
      }
      throw e;
    }
    // pg_rewind copied the source's postgresql.conf, pg_hba.conf and state file over ours. A replica has no
    // synchronous standbys of its own.
    await this.writeConfiguration({ following: from, synchronousStandbyNames: [] });
    await this.setStandbySignal(true);
  }

  /**
   * Removes standby.signal and recovery.signal and says which were there. A single-user server refuses standby
   * mode ("standby mode is not supported by single-user servers"), and recovery.signal would ask it for archive
   * recovery; recovery settings without a signal file do not start either.
   */
  private async takeRecoverySignals(): Promise<string[]> {
    const present: string[] = [];
    for (const name of ['standby.signal', 'recovery.signal']) {
      const file = path.join(this.dataDir, name);
      try {
        await stat(file);
      } catch {
        continue;
      }
      await rm(file, { force: true });
      present.push(name);
    }
    return present;
  }

  private async putRecoverySignals(names: string[]): Promise<void> {
    for (const name of names) await writeFileAs(path.join(this.dataDir, name), '', this.owner);
  }

  /** Removes the data directory's contents (to reinitialize). The server must be stopped. */
  async wipe(): Promise<void> {
    if (this.postmasterPid() !== null) {
      throw new PgwardenError('PG_COMMAND_FAILED', `Cannot wipe member ${this.name} while PostgreSQL runs: stop it first.`);
    }
    await this.close();
    this.cachedSystemId = null;
    let entries: string[];
    try {
      entries = await readdir(this.dataDir);
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return;
      throw e;
    }
    for (const entry of entries) await rm(path.join(this.dataDir, entry), { recursive: true, force: true });
  }

  /** Makes the server re-read its configuration files (SIGHUP to the postmaster). */
  async reload(): Promise<void> {
    const pid = this.postmasterPid();
    if (pid === null) {
      throw new PgwardenError('PG_NOT_RUNNING', `Cannot reload member ${this.name}: PostgreSQL is not running.`);
    }
    process.kill(pid, 'SIGHUP');
  }

  /** Fast stop, then start in the role and with the upstream it had. */
  async restart(): Promise<void> {
    const replica = await this.hasStandbySignal();
    const state = await this.readState();
    await this.stop('fast');
    await this.start(replica ? 'replica' : 'primary', replica ? state.following : null);
  }

  /** Writes synchronous_standby_names (`FIRST n (...)` over all names; [] none; ['*'] any) and reloads. */
  async setSynchronousStandbys(names: string[]): Promise<void> {
    await this.writeConfiguration({ ...(await this.readState()), synchronousStandbyNames: [...names] });
    if (this.postmasterPid() !== null) await this.reload();
  }

  /** The standbys this primary reports as synchronous (or quorum), each with pg_current_wal_lsn() as the row was read. */
  async synchronousStandbys(): Promise<Array<{ name: string; lsn: Lsn | null }>> {
    const rows = await this.query<{ name: string; lsn: string }>(
      "SELECT application_name AS name, pg_current_wal_lsn()::text AS lsn FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')",
    );
    return rows.map((r) => ({ name: r.name, lsn: parseLsnOrNull(r.lsn) }));
  }

  /** Replaces the user parameters (from the cluster's dynamic configuration) and rewrites postgresql.conf; reload or restart to apply. */
  async setParameters(parameters: Record<string, ConfValue>): Promise<void> {
    this.parameters = { ...parameters };
    if ((await this.dataDirState()) === 'initialized') await this.writeConfiguration(await this.readState());
  }

  /**
   * Creates missing physical slots and drops inactive ones, named after members (see slotNameFor). An active
   * slot is never dropped: its member is still streaming.
   */
  async manageSlots(create: string[], drop: string[]): Promise<void> {
    for (const member of create) {
      try {
        await this.query(
          'SELECT pg_create_physical_replication_slot($1, true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)',
          [slotNameFor(member)],
        );
      } catch (e) {
        // Created meanwhile by someone else: that is the desired end state.
        if (errnoCode((e as PgwardenError).cause) !== '42710') throw e;
      }
    }
    for (const member of drop) {
      await this.query(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND slot_type = 'physical' AND NOT active",
        [slotNameFor(member)],
      );
    }
  }
}
