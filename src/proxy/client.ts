/**
 * One client connection: startup and authentication, then forwarding of whole frames to the server connection
 * it holds (for a transaction in transaction mode, for its lifetime in session mode). The pieces with a concern of
 * their own live beside it: the transport checks of the startup (client-startup.ts), the password exchange
 * (client-auth.ts), named prepared statements and their shape checks (client-statements.ts), session state that
 * pins the client to its connection (client-pins.ts), idle timeouts (client-idle.ts), answers while its
 * transaction's server connection is lost (lost-transaction.ts) and the write step of forwarding (wire/span-writer.ts).
 *
 * Forwarding follows the hot-path rules (docs/decisions/0011-proxy-read-buffer-and-cork.md): consecutive frames
 * are written as one slice of the received chunk inside cork/uncork; the client frames looked at are
 * Parse/Bind/Describe/Close (prepared statements), Sync, Query, FunctionCall (answers owed) and Terminate. When no
 * server connection is free the client's unread frames stay in the framer (its socket is paused only if it sends
 * more than HIGH_WATER_MARK meanwhile): the wait costs no copies and no growing queue; so does the wait for a
 * shape check. In transaction mode Query/Parse text and CommandComplete tags are watched for session state
 * (advisory locks, LISTEN, SET, ...) that pins the client to its connection.
 */
import { randomInt } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { PgProtocolError, SQLSTATE, isPgProtocolError } from './protocol/errors.js';
import { TargetKindByte, TransactionStatusByte } from './protocol/constants.js';
import { MessageFramer, frontendAuthLimits, frontendLimits } from './protocol/framer.js';
import * as m from './protocol/messages.js';
import { MessageWriter } from './protocol/writer.js';
import { applySettingsSql, clientSettings, settingsKey } from './pool/session-params.js';
import { Expect, HIGH_WATER_MARK, type ServerConn, type ServerConnPeer } from './pool/server-conn.js';
import type { ShapeCheck } from './pool/statement-shape.js';
import { ClientStatements } from './client-statements.js';
import { NativeWire } from './wire/native-wire.js';
import { SpanWriter } from './wire/span-writer.js';
import type { Wire } from './wire/wire.js';
import { FOLLOWED_PARAMETERS } from './protocol/session-state.js';
import { SessionPins } from './client-pins.js';
import { IdleWatch } from './client-idle.js';
import { PasswordExchange } from './client-auth.js';
import type { PoolWaiter, ServerPool } from './pool/server-pool.js';
import type { ConsoleDoor } from './admin/door.js';
import type { PauseGate } from './pause-gate.js';
import type { ClientTls } from './tls.js';
import { acceptTls, checkCertificateUser, checkTlsRequest, checkTransport } from './client-startup.js';
import { LostOutcome, LostTransaction } from './lost-transaction.js';
import * as clock from './clock.js';
import { type AuthMethod, authMethodFor } from './auth/hba.js';
import type { HbaRules } from '../postgres/hba.js';
import { closeConnection } from './closing.js';

/** What a client needs from the proxy server that accepted it. */
export interface ClientHost {
  readonly poolMode: 'session' | 'transaction';
  /** hba: each login's method comes from `hba` (authMethodFor). */
  readonly authType: 'scram-sha-256' | 'md5' | 'trust' | 'hba';
  readonly hba?: HbaRules | null;
  readonly maxMessageLength: number;
  readonly serverResetQuery: string;
  /** Logged-in plain TCP clients move to a NativeWire (native_io and the module is there). */
  readonly nativeIo?: boolean;
  /** TLS for clients (client_tls_*); absent or null: SSLRequest is answered N. */
  readonly clientTls?: ClientTls | null;
  /** The userlist entry for `user`, or null. */
  secretFor(user: string): string | null;
  /**
   * The secret to check `user` against for `database`: auth_file's entry at once, or a promise while auth_query
   * asks the primary; null for an unknown user or an expired password. Absent: secretFor only.
   */
  lookupSecret?(user: string, database: string): string | null | Promise<string | null>;
  /** Where PAUSE holds this host's clients; absent: never paused. */
  readonly pauseGate?: PauseGate;
  /** The admin console's logins; absent or null: no console database here. */
  readonly consoleDoor?: ConsoleDoor | null;
  /** The pool for (database as the client named it, user); throws PgProtocolError 3D000 for an unknown database. */
  poolFor(database: string, user: string): ServerPool;
  register(client: ProxyClient): void;
  unregister(client: ProxyClient): void;
  /** The client's connection moved from `socket` to `wire` (native I/O), which is counted until it closes. */
  adopted?(socket: Socket, wire: Wire): void;
  wireClosed?(wire: Wire): void;
  /** Transaction mode: `client` was just pinned to its server connection because of `reasons` (for the log). */
  onPin?(client: ProxyClient, reasons: string): void;
  cancel(pid: number, secretKey: number): void;
  /**
   * `client` is being closed for `error` (failed logins and protocol violations are logged and counted there);
   * `fromInput`: the error came from handling what the client sent.
   */
  clientFailed?(client: ProxyClient, error: PgProtocolError, fromInput: boolean): void;
  /** For debug lines about clients that leave without a word (absent: not logged). */
  readonly logger?: Logger;
}

type State = 'startup' | 'lookup' | 'password' | 'connecting' | 'ready' | 'closed';

/** Values a server reports that follow the client's own startup settings. */
const REPORTED_FROM_CLIENT = new Set(['application_name', 'client_encoding', 'DateStyle', 'TimeZone', 'IntervalStyle', 'standard_conforming_strings', 'is_superuser']);

export class ProxyClient implements ServerConnPeer, PoolWaiter {
  /**
   * The BackendKeyData this client got, for CancelRequest matching: in session mode its server connection's real
   * one when it took that connection at login (see finishAuth), else (a session login while the pool was full or
   * PAUSEd, transaction mode, the admin console) the proxy's own random pair.
   */
  pid = randomInt(1, 0x7fffffff);
  secretKey = randomInt(0, 0x7fffffff);
  user = '';
  database = '';
  server: ServerConn | null = null;
  state: State = 'startup';
  /** The client talks TLS: `socket` is then the TLSSocket over the accepted TCP socket. */
  encrypted = false;
  /** When the connection was accepted (ms since the epoch), for SHOW CLIENTS' connect_time. */
  readonly connectedAt = clock.wallNow();
  /** clock.now() when its last request (first message after a ReadyForQuery) started; 0: none yet. */
  requestStartedAt = 0;

  private readonly framer: MessageFramer;
  private readonly writer = new MessageWriter(1024);
  /** Writes the frames forwarded to the server connection (reused for every read). */
  private readonly spans = new SpanWriter();
  private pool: ServerPool | null = null;
  /** Its pool's mode (pool_mode, or the database's or user's own). */
  private mode: 'session' | 'transaction';
  /** How this client logs in (auth_type, or its auth_hba_file line). */
  private method: AuthMethod = 'scram-sha-256';
  /** The password exchange while the client logs in with one (state 'password'), and after it (its secret). */
  private password: PasswordExchange | null = null;
  /** Session mode: the SCRAM server-final message, kept while the client's server connection is opened at login. */
  private saslFinal: Buffer | null = null;
  private settings = new Map<string, string>();
  private settingsSql = 'RESET ALL';
  private settingsId = '[]';
  /** The current frame was read from the framer but not handled yet (waiting for a server connection). */
  private held = false;
  /** Transaction mode: why this client keeps its server connection past its transactions (client-pins.ts). */
  private readonly pins = new SessionPins();
  /** clock.now() when this client began waiting for a server connection; 0 when not waiting. */
  private waitStartedAt = 0;
  private waiting = false;
  /** Extended-protocol messages were sent since the last Sync: the server may not be given back yet. */
  private midBatch = false;
  /** Named prepared statements of this client, and the shape check its current frame may wait for (client-statements.ts). */
  private readonly statements = new ClientStatements();
  /** Where PAUSE holds this client (null: never paused). */
  private readonly gate: PauseGate | null;
  /** The admin console's door when this client logged in to it rather than to a pool. */
  private door: ConsoleDoor | null = null;
  /** The server connection died under this client's transaction: answered without a server until in step again. */
  private lost: LostTransaction | null = null;
  /** idle_transaction_timeout / client_idle_timeout (client-idle.ts). */
  private readonly idle = new IdleWatch();
  private readonly onDrain = (): void => {
    this.server?.socket.resume();
  };

  private readonly onSocketClose = (): void => this.handleClose();
  /** Reads through a NativeWire: chunks are views of its arena, so whatever the framer keeps is copied. */
  private native = false;
  private readonly onNativeData = (buf: Buffer, start: number, end: number): void => {
    this.received(buf, start, end);
    if (this.held || this.framer.bufferedBytes > 0) this.framer.own(this.held);
  };

  private readonly onData = (chunk: Buffer): void => this.received(chunk, 0, chunk.length);

  private received(buf: Buffer, start: number, end: number): void {
    const pool = this.pool;
    if (pool !== null) pool.counters.bytesReceived += end - start;
    this.framer.pushRange(buf, start, end);
    if (this.waiting || this.statements.checking) {
      // The frames wait in the framer for a server connection (or a shape check); only a client that keeps sending is paused.
      if (this.framer.bufferedBytes > HIGH_WATER_MARK) this.socket.pause();
      return;
    }
    this.pump();
  }

  /** The Node socket until logged in (a TLSSocket with TLS), then a NativeWire where native I/O took it over. */
  socket: Wire;

  constructor(
    socket: Socket,
    private readonly host: ClientHost,
    /** Accepted on the Unix-domain socket: a `local` connection (no TLS, no address). */
    readonly local = false,
  ) {
    this.socket = socket;
    this.framer = new MessageFramer({ startup: true });
    this.mode = host.poolMode;
    this.gate = host.pauseGate ?? null;
    socket.setNoDelay(true);
    this.listen(socket);
  }

  private listen(socket: Socket): void {
    socket.on('data', this.onData);
    socket.on('drain', this.onDrain);
    socket.on('error', () => undefined);
    socket.on('close', this.onSocketClose);
  }

  /** Plain TCP, logged in: the native module takes the connection over (native-wire.ts), if it can. */
  private adoptNative(): void {
    if (this.encrypted || this.host.nativeIo !== true) return;
    const raw = this.socket as Socket;
    const wire = NativeWire.adopt(raw);
    if (wire === null) return;
    raw.off('data', this.onData);
    raw.off('drain', this.onDrain);
    raw.off('close', this.onSocketClose);
    wire.onData = this.onNativeData;
    wire.onDrain = this.onDrain;
    wire.onClose = () => {
      this.host.wireClosed?.(wire);
      this.handleClose();
    };
    this.socket = wire;
    this.native = true;
    this.host.adopted?.(raw, wire);
  }

  /** SSLRequest with TLS configured: the startup continues on a TLSSocket over the same TCP socket (client-startup.ts). */
  private startTls(tls: ClientTls): void {
    checkTlsRequest(this.encrypted, this.framer.bufferedBytes);
    const raw = this.socket as Socket;
    raw.off('data', this.onData);
    raw.off('drain', this.onDrain);
    const secure = acceptTls(raw, tls);
    this.socket = secure;
    this.encrypted = true;
    this.listen(secure);
  }

  // ------------------------------------------------------------------------------------------------------------
  // Input
  // ------------------------------------------------------------------------------------------------------------

  private pump(): void {
    try {
      if (this.state === 'ready') {
        if (this.lost !== null) this.serveLost();
        if (this.lost === null && this.state === 'ready') this.forward();
      } else this.handshake();
    } catch (e) {
      this.fail(e, true);
    }
  }

  private handshake(): void {
    const f = this.framer;
    while (this.state !== 'connecting' && this.state !== 'ready' && this.state !== 'closed' && this.state !== 'lookup' && f.next()) {
      if (this.state === 'startup') this.handleStartup();
      else this.handleAuthMessage();
    }
  }

  private handleStartup(): void {
    const f = this.framer;
    const frame = m.decodeStartupFrame(f.buffer, f.bodyStart, f.end);
    if (frame.kind === 'ssl') {
      const tls = this.host.clientTls ?? null;
      // As PostgreSQL: no TLS over the Unix-domain socket.
      if (tls === null || this.local) this.socket.write(m.SSL_REFUSED);
      else this.startTls(tls);
      return;
    }
    if (frame.kind === 'gssenc') {
      this.socket.write(m.GSSENC_REFUSED);
      return;
    }
    if (frame.kind === 'cancel') {
      this.host.cancel(frame.pid, frame.secretKey);
      this.state = 'closed';
      this.socket.destroy();
      return;
    }
    if (frame.replication !== undefined && frame.replication !== 'false' && frame.replication !== '0') {
      throw new PgProtocolError(SQLSTATE.FEATURE_NOT_SUPPORTED, 'replication connections are not supported by the proxy');
    }
    this.user = frame.user;
    this.database = frame.database;
    checkTransport(this, this.host.clientTls ?? null, frame.user, frame.database);
    // auth_hba_file is asked first, as by PostgreSQL: a refused client learns nothing about databases or limits.
    this.method = authMethodFor(this.host.authType, this.host.hba, {
      local: this.local,
      ssl: this.encrypted,
      address: this.socket.remoteAddress,
      database: this.database,
      user: this.user,
    });
    if (this.method === 'cert') checkCertificateUser(this, this.user);
    try {
      this.settings = clientSettings(frame.params);
    } catch (e) {
      throw new PgProtocolError('22023', (e as Error).message);
    }
    this.settingsSql = applySettingsSql(this.settings);
    this.settingsId = settingsKey(this.settings);
    const door = this.host.consoleDoor ?? null;
    this.door = door !== null && door.serves(this.database) ? door : null;
    this.pool = this.door !== null ? null : this.host.poolFor(this.database, this.user);
    if (this.pool !== null) this.mode = this.pool.poolMode;
    if (frame.minorVersion > 0 || frame.protocolOptions.length > 0) m.writeNegotiateProtocolVersion(this.writer, 0, frame.protocolOptions);
    this.framer.setLimits(frontendAuthLimits());
    if (this.method === 'trust' || this.method === 'cert') {
      this.finishAuth(null);
      return;
    }
    // The admin console knows only auth_file's users (as PgBouncer's does).
    const found = this.door !== null || this.host.lookupSecret === undefined ? this.host.secretFor(this.user) : this.host.lookupSecret(this.user, this.database);
    if (found === null || typeof found === 'string') {
      this.challenge(found);
      return;
    }
    // auth_query: nothing is read from this client until the primary answered; other clients go on meanwhile.
    this.state = 'lookup';
    this.socket.pause();
    found.then(
      (secret) => {
        if (this.state !== 'lookup') return;
        this.socket.resume();
        try {
          this.challenge(secret);
        } catch (e) {
          this.fail(e);
          return;
        }
        this.pump();
      },
      (e: unknown) => this.fail(e),
    );
  }

  /** Asks the client for its password the way its secret allows (client-auth.ts). */
  private challenge(secret: string | null): void {
    this.password = new PasswordExchange(this.user, this.method, secret);
    this.state = 'password';
    this.socket.write(this.password.request(this.writer));
  }

  private handleAuthMessage(): void {
    const f = this.framer;
    if (f.type === m.FrontendType.Terminate) {
      this.close();
      return;
    }
    const exchange = this.password!;
    const answer = exchange.receive(f.buffer, f.bodyStart, f.end, this.writer);
    if (Buffer.isBuffer(answer)) {
      this.socket.write(answer);
      return;
    }
    if (answer.scramKeys !== null) this.pool?.rememberScramKeys(answer.scramKeys);
    this.pool?.rememberSecret(exchange.secret);
    this.finishAuth(answer.saslFinal);
  }

  /**
   * Authenticated. Session mode, when a server connection is to be had without waiting for another client (an idle
   * one, or room to open one, and no PAUSE): the client takes it now and is told that backend's real pid and key and
   * its parameters. Otherwise (pool full, PAUSE; and always in transaction mode) the client logs in at once, as in
   * PgBouncer, with the pool's parameters (the first client of a pool opens a connection to learn them) and the
   * proxy's own random pid and key (CancelRequests with it still reach the client's query: the host maps keys to
   * clients); a session client then takes its server connection at its first query, waiting there if need be.
   * Then the client is said hello.
   */
  private finishAuth(saslFinal: Buffer | null): void {
    if (this.door !== null) {
      if (this.door.role(this.user) === null) {
        // PgBouncer's words; 42501 so that scripts see a privilege error. A failed login like any other (logged, counted).
        throw new PgProtocolError('42501', 'not allowed', { hint: `Add "${this.user}" to admin_users or stats_users in the proxy config.` });
      }
      // Handed over: the console session owns the socket from here; 'closed' keeps this object out of the way.
      this.state = 'closed';
      this.door.openSession(this.socket as Socket, this.user, saslFinal, this.pid, this.secretKey);
      return;
    }
    this.state = 'connecting';
    if (this.mode === 'session' && this.gate?.paused !== true) {
      const pool = this.pool!;
      const conn = pool.tryAcquire();
      if (conn !== null) {
        this.saslFinal = saslFinal;
        this.loggedInWith(conn);
        return;
      }
      if (pool.opensForNewWaiter()) {
        // Only the connect time: the connection opened now is this client's (or one released meanwhile).
        this.saslFinal = saslFinal;
        this.waiting = true;
        this.waitStartedAt = clock.now();
        pool.wait(this);
        return;
      }
    }
    this.pool!.parameters().then(
      (params) => {
        if (this.state !== 'connecting') return;
        this.welcome(saslFinal, params);
      },
      (e: unknown) => this.fail(e),
    );
  }

  /** Session mode: the client's server connection for its whole session; its backend's pid and key are the client's. */
  private loggedInWith(conn: ServerConn): void {
    const saslFinal = this.saslFinal;
    this.saslFinal = null;
    this.pid = conn.backendPid;
    this.secretKey = conn.backendSecret;
    this.attach(conn);
    this.welcome(saslFinal, conn.params);
  }

  /** AuthenticationOk and what follows it up to ReadyForQuery; the client is logged in. */
  private welcome(saslFinal: Buffer | null, params: ReadonlyMap<string, string>): void {
    const w = this.writer;
    if (saslFinal !== null) m.writeAuthenticationSASLFinal(w, saslFinal);
    m.writeAuthenticationOk(w);
    for (const [name, value] of params) {
      const own = REPORTED_FROM_CLIENT.has(name) ? this.settings.get(name) : undefined;
      m.writeParameterStatus(w, name, own ?? value);
    }
    if (!params.has('application_name') && this.settings.has('application_name')) {
      m.writeParameterStatus(w, 'application_name', this.settings.get('application_name')!);
    }
    m.writeBackendKeyData(w, this.pid, this.secretKey);
    m.writeReadyForQuery(w, 'I');
    this.socket.write(w.flush());
    this.framer.setLimits(frontendLimits(this.host.maxMessageLength));
    this.state = 'ready';
    this.host.register(this);
    this.adoptNative();
    this.pump();
  }

  /** The hot loop: frames from the client to its server connection. */
  private forward(): void {
    const f = this.framer;
    let server = this.server;
    const spans = this.spans;
    spans.begin(server === null ? null : server.socket, this.native);
    try {
      for (;;) {
        if (!this.held) {
          if (!f.next()) break;
          this.held = true;
        }
        const t = f.type;
        if (server === null) {
          if (t === m.FrontendType.Terminate) {
            this.held = false;
            this.close();
            return;
          }
          if (t === m.FrontendType.CopyData || t === m.FrontendType.CopyDone || t === m.FrontendType.CopyFail) {
            // The rest of a COPY the server already failed (and answered ReadyForQuery for): PostgreSQL ignores
            // these outside COPY, so they are dropped rather than take a server connection no answer would free.
            this.held = false;
            continue;
          }
          server = this.gate?.paused === true ? null : this.pool!.tryAcquire();
          if (server === null) {
            if (!this.waiting) {
              this.waiting = true;
              this.waitStartedAt = clock.now();
              if (this.gate?.paused === true) this.gate.hold(this, this.pool!);
              else this.pool!.wait(this);
            }
            return;
          }
          this.attach(server);
          spans.begin(server.socket, this.native);
        }
        this.held = false;
        if (t === m.FrontendType.Terminate) {
          spans.finish();
          this.close();
          return;
        }
        if (!server.queryRunning) {
          const now = clock.now();
          server.beginQuery(now);
          this.requestStartedAt = now;
        }
        let inject = false;
        if (t === m.FrontendType.Sync || t === m.FrontendType.Query || t === m.FrontendType.FunctionCall) {
          server.pushExpect(Expect.Sync);
          this.midBatch = false;
          if (t === m.FrontendType.Query && this.mode === 'transaction') this.pins.noteSql(f.buffer, f.bodyStart, f.end - 1);
        } else if (t === m.FrontendType.Parse) {
          this.midBatch = true;
          if (this.mode === 'transaction') {
            const textStart = f.buffer.indexOf(0, f.bodyStart) + 1;
            const textEnd = f.buffer.indexOf(0, textStart);
            if (textStart > 0 && textEnd > 0 && textEnd < f.end) this.pins.noteSql(f.buffer, textStart, textEnd);
          }
          if (f.buffer[f.bodyStart] !== 0) {
            inject = true; // named: handled below, outside the plain forwarding run
          } else {
            server.pushExpect(Expect.ClientParse);
          }
        } else if (t === m.FrontendType.Bind) {
          this.midBatch = true;
          // The statement name follows the portal name.
          const portalEnd = f.buffer.indexOf(0, f.bodyStart);
          if (portalEnd >= 0 && portalEnd + 1 < f.end && f.buffer[portalEnd + 1] !== 0) inject = this.statements.needsPrepare(server, f.buffer, portalEnd + 1, f.end);
        } else if (t === m.FrontendType.Describe) {
          this.midBatch = true;
          if (f.buffer[f.bodyStart] === TargetKindByte.Statement && f.buffer[f.bodyStart + 1] !== 0) inject = this.statements.needsPrepare(server, f.buffer, f.bodyStart + 1, f.end);
        } else if (t === m.FrontendType.Close) {
          this.midBatch = true;
          if (f.buffer[f.bodyStart] === TargetKindByte.Statement && f.buffer[f.bodyStart + 1] !== 0) {
            const name = m.decodeClose(f.buffer, f.bodyStart, f.end).name;
            this.statements.closed(name, server);
          }
          server.pushExpect(Expect.ClientClose);
        } else if (t !== m.FrontendType.CopyData && t !== m.FrontendType.CopyDone && t !== m.FrontendType.CopyFail) {
          this.midBatch = true;
        }
        if (inject) {
          // Several writes follow: batch them.
          spans.corkNow();
          spans.flush();
          if (this.statements.prepareOn(server, f, this.mode === 'transaction', this.native)) {
            // A shape check is owed: this frame and the ones after it wait for onShapeChecked.
            this.held = true;
            return;
          }
          continue;
        }
        spans.add(f.buffer, f.start, f.end);
      }
    } finally {
      const out = spans.finish();
      if (out !== null && out.writableLength > HIGH_WATER_MARK) this.socket.pause();
    }
  }

  /** The shape check the current frame waits for is resolved (ClientStatements.checkResolved); the client goes on. */
  onShapeChecked(conn: ServerConn, result: ShapeCheck): void {
    if (conn !== this.server || !this.statements.checking) return;
    if (this.statements.checkResolved(conn, result, this.framer.type)) this.held = false; // answered by the error instead
    // Paused only when it sent more than HIGH_WATER_MARK meanwhile (see received); forward() pauses it again if needed.
    if (this.socket.isPaused()) this.socket.resume();
    this.pump();
  }

  // ------------------------------------------------------------------------------------------------------------
  // Server connection lifecycle
  // ------------------------------------------------------------------------------------------------------------

  private attach(server: ServerConn): void {
    this.server = server;
    // The server socket's 'drain' resumes this client through ServerConn (its peer): no listener per transaction.
    server.attach(this, this.pool!.counters);
    server.applySettings(this.settingsId, this.settingsSql);
    server.socket.resume();
  }

  onServerAcquired(conn: ServerConn): void {
    this.waiting = false;
    if (this.waitStartedAt !== 0) {
      if (this.pool !== null) this.pool.counters.waitTimeUs += Math.round((clock.now() - this.waitStartedAt) * 1000);
      this.waitStartedAt = 0;
    }
    if (this.state === 'connecting') {
      this.loggedInWith(conn);
      return;
    }
    if (this.state !== 'ready') {
      this.pool?.release(conn);
      return;
    }
    this.attach(conn);
    // Paused only when it sent more than HIGH_WATER_MARK meanwhile; resume() costs a tick, so only when needed.
    if (this.socket.isPaused()) this.socket.resume();
    this.pump();
  }

  onAcquireFailed(error: PgProtocolError): void {
    this.waiting = false;
    if (this.state !== 'ready' && this.state !== 'connecting') return;
    this.fail(error);
  }

  /**
   * A ReadyForQuery for the client. Counts it: one query per ReadyForQuery answering a Query/Sync, one
   * transaction per ReadyForQuery with status idle (an explicit transaction ended, or an autocommit statement
   * or Sync batch ran), timed from the first client message after the previous one. In transaction mode the
   * connection then goes back to the pool, unless session state pins the client to it.
   */
  onServerReady(conn: ServerConn, status: number): void {
    conn.finishQuery(clock.now(), status);
    if (this.mode !== 'transaction') return;
    if ((conn.hasSessionTags || this.pins.effectsPending) && this.pins.settle(conn)) {
      const counters = this.pool!.counters;
      if (this.pins.pinned) {
        counters.pinnedClients++;
        this.host.onPin?.(this, this.pins.reasons());
      } else {
        counters.pinnedClients--;
      }
    }
    if (status === TransactionStatusByte.Idle && conn.outstanding === 0 && !this.midBatch && !this.held && !this.pins.pinned) {
      this.releaseServer();
    }
  }

  /**
   * The server told this client a reported parameter changed (its SET or RESET, or a rollback undoing one): for the
   * followed ones the client's settings take the value, so every server connection it gets from now on is given it
   * (see attach), and the connection that made the change already has it.
   */
  onParameterStatus(conn: ServerConn, name: string, value: string): void {
    if (!FOLLOWED_PARAMETERS.has(name) || this.settings.get(name) === value) return;
    const inStep = conn.settingsKey === this.settingsId;
    const next = new Map(this.settings);
    next.set(name, value);
    this.settings = clientSettings(next);
    this.settingsSql = applySettingsSql(this.settings);
    this.settingsId = settingsKey(this.settings);
    if (inStep) conn.settingsChanged(this.settingsId);
  }

  /** True while session state keeps this client on its server connection (transaction mode). */
  get pinned(): boolean {
    return this.pins.pinned;
  }

  /**
   * The server connection ended under this client. When PostgreSQL said why (a FATAL: pg_terminate_backend 57P01,
   * a shutdown, a timeout), the client is told PostgreSQL's own error, else the proxy's 08006.
   */
  onServerLost(conn: ServerConn, message: string): void {
    if (this.server !== conn) return;
    // A shape check cannot be answered any more: its frame (still current, held) is the lost transaction's.
    this.statements.abandonCheck();
    const error = conn.serverError;
    const loss = { outstanding: conn.outstanding, inTransaction: conn.status !== TransactionStatusByte.Idle, midBatch: this.midBatch, reason: message, error };
    // A pinned client's session state (locks, LISTEN, settings) died with the connection: it cannot go on.
    const pinned = this.pins.pinned;
    this.detachServer();
    this.pool?.discard(conn);
    if (this.state !== 'ready') return;
    if (this.mode !== 'transaction' || pinned) {
      // The session (SET, temp tables, prepared statements) died with the server: as PgBouncer, end the client;
      // with PostgreSQL's FATAL as it was sent, so the client sees what a direct connection would have.
      if (error === null) this.fail(new PgProtocolError(SQLSTATE.CONNECTION_FAILURE, message));
      else {
        if (this.socket.writable) this.socket.end(m.writeErrorResponse(this.writer, error).flush());
        this.close();
      }
      return;
    }
    // Transaction mode: the client stays; only what ran on the dead server fails (lost-transaction.ts).
    this.midBatch = false;
    this.lost = LostTransaction.afterLoss(loss, this.writer);
    this.socket.write(this.writer.flush());
    if (!this.waiting) this.socket.resume();
    this.pump();
  }

  /** Frames of a client whose transaction was lost, until it is back in step (then forward() takes over). */
  private serveLost(): void {
    const f = this.framer;
    const w = this.writer;
    // A frame held for a shape check when the connection died is handled first.
    while (this.lost !== null && (this.held || f.next())) {
      this.held = false;
      if (f.type === m.FrontendType.Terminate) {
        this.socket.write(w.flush());
        this.close();
        return;
      }
      const outcome = this.lost.handle(f.type, f.buffer, f.start, f.bodyStart, f.end, w, this.statements.byName);
      if (outcome === LostOutcome.Consumed) continue;
      this.lost = null;
      // The frame stays current: forward() sends it to a server.
      if (outcome === LostOutcome.Pass) this.held = true;
    }
    this.socket.write(w.flush());
  }

  /** One sweep of idle_transaction_timeout / client_idle_timeout (ms, 0: off) at `now` (see client-idle.ts). */
  checkIdle(now: number, idleInTransactionMs: number, clientIdleMs: number): void {
    if (this.state !== 'ready') return;
    const server = this.server;
    const bytes = this.socket.bytesRead + this.socket.bytesWritten + (server === null ? 0 : server.socket.bytesRead + server.socket.bytesWritten);
    const busy = this.waiting || this.statements.checking || (server !== null && server.outstanding > 0);
    const inTransaction = (server !== null && server.status !== TransactionStatusByte.Idle) || (this.lost?.inTransaction ?? false);
    const error = this.idle.check(now, bytes, busy, inTransaction, idleInTransactionMs, clientIdleMs);
    if (error !== null) this.fail(error);
  }

  private detachServer(): void {
    const server = this.server;
    if (server === null) return;
    if (this.pins.clear()) this.pool!.counters.pinnedClients--;
    server.clearSessionTags();
    this.server = null;
  }

  private releaseServer(): void {
    const server = this.server!;
    this.detachServer();
    this.pool!.release(server);
  }

  // ------------------------------------------------------------------------------------------------------------
  // Endings
  // ------------------------------------------------------------------------------------------------------------

  /** Cancels what this client's server connection runs (CancelRequest with our fake key matched). */
  cancelRunning(): void {
    this.server?.cancel();
  }

  /** A secret was found for the user this client names (false before the lookup, or for an unknown user). */
  get userKnown(): boolean {
    return this.password !== null && this.password.secret !== null;
  }

  /**
   * Sends the error (FATAL for protocol errors) and closes this client only; a silent error (a client that left
   * before its startup packet) is only logged at debug level. `fromInput`: raised while handling what the client
   * sent (pump), which tells protocol violations from timeouts and limits.
   */
  fail(e: unknown, fromInput = false): void {
    if (this.state === 'closed') return;
    const error = isPgProtocolError(e) ? e : new PgProtocolError('XX000', `internal proxy error: ${(e as Error).message}`);
    if (error.silent) {
      this.host.logger?.debug({ client: this.socket.remoteAddress, reason: error.message }, 'client connection closed');
    } else {
      this.host.clientFailed?.(this, error, fromInput);
      if (this.socket.writable) this.socket.end(m.errorResponse({ ...error.toFields(), severity: 'FATAL' }));
    }
    this.close();
  }

  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.host.unregister(this);
    if (this.waiting) {
      this.waiting = false;
      this.pool?.cancelWait(this);
    }
    const server = this.server;
    if (server !== null) {
      const pinned = this.pins.pinned;
      this.detachServer();
      if (server.outstanding === 0 && server.status === TransactionStatusByte.Idle && !this.midBatch) {
        if (this.mode === 'session' && this.host.serverResetQuery !== '') {
          server.resetSession(this.host.serverResetQuery);
        } else if (pinned) {
          // Outside a transaction block DISCARD ALL drops every kind of state a pin was for: the connection is reusable.
          server.resetSession('DISCARD ALL');
        }
        this.pool!.release(server);
      } else {
        this.pool!.discard(server);
      }
    }
    closeConnection(this.socket);
  }

  private handleClose(): void {
    // PostgreSQL closes silently too (health checks and port probes connect and leave); only a debug line.
    if (this.state === 'startup') this.host.logger?.debug({ client: this.socket.remoteAddress }, 'client closed the connection before its startup packet');
    this.close();
  }
}
