/**
 * One client connection: startup and authentication, then forwarding of whole frames to the server connection
 * it holds (for a transaction in transaction mode, for its lifetime in session mode).
 *
 * Forwarding follows the hot-path rules (docs/decisions/0011-proxy-read-buffer-and-cork.md): consecutive frames
 * are written as one slice of the received chunk
 * inside cork/uncork; the client frames looked at are Parse/Bind/Describe/Close (prepared statements), Sync,
 * Query, FunctionCall (answers owed) and Terminate. When no server connection is free the client's unread
 * frames stay in the framer (its socket is paused only if it sends more than HIGH_WATER_MARK meanwhile): the
 * wait costs no copies and no growing queue. In transaction mode Query/Parse text and CommandComplete tags
 * are watched for session state (advisory locks, LISTEN, SET, ...) that pins the client to its connection.
 *
 * Named prepared statements live on the server connection the client prepared them on; in transaction mode the
 * proxy prepares them again on each other connection the client uses them on (prepareOn). PostgreSQL never lets
 * a prepared statement change its result type, so neither does the proxy: a statement's shape is recorded when the
 * client prepares it, and when it is prepared again its shape is compared first, the client's Bind/Describe waiting
 * the one round trip in the framer as it waits for a server connection. A different shape (the table was dropped
 * and created with other columns) gets PostgreSQL's ERROR 0A000 "cached plan must not change result type" on each
 * use until the client prepares the statement again (onShapeChecked, statement-shape.ts).
 */
import { randomInt } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { TLSSocket } from 'node:tls';
import { md5Salt, verifyMd5Response } from './auth/md5.js';
import { ScramServerSession } from './auth/scram.js';
import { PgProtocolError, SQLSTATE, isPgProtocolError } from './protocol/errors.js';
import { TargetKindByte, TransactionStatusByte } from './protocol/constants.js';
import { MessageFramer, frontendAuthLimits, frontendLimits } from './protocol/framer.js';
import * as m from './protocol/messages.js';
import { MessageWriter } from './protocol/writer.js';
import { applySettingsSql, clientSettings, settingsKey } from './pool/session-params.js';
import { Expect, HIGH_WATER_MARK, type ServerConn, type ServerConnPeer } from './pool/server-conn.js';
import { type ClientStatement, ShapeCheck } from './pool/statement-shape.js';
import { NativeWire, writeSpan } from './wire/native-wire.js';
import { SpanWriter } from './wire/span-writer.js';
import type { Wire } from './wire/wire.js';
import { ADVISORY_UNLOCK_ALL, FOLLOWED_PARAMETERS, SessionTag, SqlEffect, advisoryEffect, leadingEffects } from './protocol/session-state.js';
import type { PoolWaiter, ServerPool } from './pool/server-pool.js';
import type { ConsoleDoor } from './admin/door.js';
import type { PauseGate } from './pause-gate.js';
import { type ClientTls, clientCertificateProblem } from './tls.js';
import { LostOutcome, LostTransaction } from './lost-transaction.js';
import * as clock from './clock.js';
import { type AuthMethod, type HbaRules, authMethodFor } from './auth/hba.js';
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

type State = 'startup' | 'lookup' | 'sasl-initial' | 'sasl-response' | 'md5' | 'connecting' | 'ready' | 'closed';

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
  private scram: ScramServerSession | null = null;
  /** How this client logs in (auth_type, or its auth_hba_file line). */
  private method: AuthMethod = 'scram-sha-256';
  /** Session mode: the SCRAM server-final message, kept while the client's server connection is opened at login. */
  private saslFinal: Buffer | null = null;
  private salt: Buffer | null = null;
  /** The secret this client is checked against (auth_file or auth_query). */
  private secret: string | null = null;
  private settings = new Map<string, string>();
  private settingsSql = 'RESET ALL';
  private settingsId = '[]';
  /** The current frame was read from the framer but not handled yet (waiting for a server connection). */
  private held = false;
  /** Transaction mode: why this client keeps its server connection past its transactions (Pin bits; 0: it does not). */
  private pins = 0;
  /** SqlEffect bits (and ADVISORY_CHANGED) of the SQL sent since the last ReadyForQuery. */
  private sqlEffects = 0;
  /** Session-level advisory locks this client took and did not release, as counted from its SQL text. */
  private advisoryLocks = 0;
  /** clock.now() when this client began waiting for a server connection; 0 when not waiting. */
  private waitStartedAt = 0;
  private waiting = false;
  /**
   * A statement was prepared again on the server connection and its shape is being compared with the client's
   * (statement-shape.ts): the current frame (a Bind or Describe of it) waits, like the frames behind it.
   */
  private checking = false;
  /** The statement being checked, and its name. */
  private checked: ClientStatement | null = null;
  private checkedName = '';
  /** Extended-protocol messages were sent since the last Sync: the server may not be given back yet. */
  private midBatch = false;
  /** Named prepared statements of this client: name → its Parse message (a private copy) and result shape. */
  private readonly statements = new Map<string, ClientStatement>();
  /** Where PAUSE holds this client (null: never paused). */
  private readonly gate: PauseGate | null;
  /** The admin console's door when this client logged in to it rather than to a pool. */
  private door: ConsoleDoor | null = null;
  /** The server connection died under this client's transaction: answered without a server until in step again. */
  private lost: LostTransaction | null = null;
  /** idle_transaction_timeout / client_idle_timeout: bytes moved as of the last sweep, and since when unchanged. */
  private idleBytes = -1;
  private idleSince = 0;
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
    if (this.waiting || this.checking) {
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

  /**
   * SSLRequest with TLS configured: 'S', then the startup continues on a TLSSocket over the same TCP socket.
   * Bytes that came after the SSLRequest, before the handshake, were sent in plaintext and could be a
   * man-in-the-middle's injection (CVE-2021-23214): such a client is refused.
   */
  private startTls(tls: ClientTls): void {
    if (this.encrypted) throw new PgProtocolError(SQLSTATE.PROTOCOL_VIOLATION, 'SSLRequest received on a connection that already uses TLS');
    if (this.framer.bufferedBytes > 0) {
      throw new PgProtocolError(SQLSTATE.PROTOCOL_VIOLATION, 'received unencrypted data after SSL request', {
        hint: 'This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.',
      });
    }
    const raw = this.socket as Socket;
    raw.off('data', this.onData);
    raw.off('drain', this.onDrain);
    raw.write(m.SSL_ACCEPTED);
    const secure = new TLSSocket(raw, {
      isServer: true,
      secureContext: tls.secureContext,
      requestCert: tls.verifiesClientCerts,
      rejectUnauthorized: false,
    });
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
    const tls = this.host.clientTls ?? null;
    if (this.encrypted && tls?.verifiesClientCerts === true) {
      // Decrypted bytes arrived: the handshake is done and the certificate (if any) is known.
      const problem = clientCertificateProblem(this.socket as TLSSocket, tls);
      if (problem !== null) throw new PgProtocolError(SQLSTATE.INVALID_AUTHORIZATION_SPECIFICATION, `${problem}: connection refused`);
    }
    // A Unix-domain socket never leaves the machine: sslmode require is about the network (as PgBouncer).
    if (!this.encrypted && !this.local && tls?.sslmode === 'require') {
      // PostgreSQL's wording for a hostssl-only pg_hba, which clients and people recognise.
      throw new PgProtocolError(
        SQLSTATE.INVALID_AUTHORIZATION_SPECIFICATION,
        `no pg_hba.conf entry for host "${this.socket.remoteAddress ?? 'unknown'}", user "${frame.user}", database "${frame.database}", no encryption`,
        { hint: 'This proxy accepts only TLS connections (client_tls_sslmode require): connect with sslmode=require or stronger.' },
      );
    }
    // auth_hba_file is asked first, as by PostgreSQL: a refused client learns nothing about databases or limits.
    this.method = authMethodFor(this.host.authType, this.host.hba, {
      local: this.local,
      ssl: this.encrypted,
      address: this.socket.remoteAddress,
      database: this.database,
      user: this.user,
    });
    if (this.method === 'cert') this.checkCertificateUser();
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

  /**
   * auth_hba_file's cert: a client certificate (already verified against client_tls_ca_file in handleStartup)
   * whose CN is the user, as PostgreSQL's cert method without a user map.
   */
  private checkCertificateUser(): void {
    const peer = this.encrypted ? (this.socket as TLSSocket).getPeerCertificate() : null;
    if (peer === null || peer.subject === undefined) {
      throw new PgProtocolError(SQLSTATE.INVALID_AUTHORIZATION_SPECIFICATION, 'connection requires a valid client certificate');
    }
    const cn = peer.subject.CN;
    if (cn !== this.user) {
      throw new PgProtocolError(SQLSTATE.INVALID_AUTHORIZATION_SPECIFICATION, `certificate authentication failed for user "${this.user}"`, {
        detail: `The certificate's common name is ${cn === undefined ? 'missing' : `"${String(cn)}"`}; it must be the user name.`,
      });
    }
  }

  /** Asks the client for its password the way its secret allows (md5 clients of SCRAM secrets get SCRAM). */
  private challenge(secret: string | null): void {
    this.secret = secret;
    if (this.method === 'md5' && (secret === null || !secret.startsWith('SCRAM-SHA-256$'))) {
      this.salt = md5Salt();
      this.state = 'md5';
      this.socket.write(m.writeAuthenticationMD5Password(this.writer, this.salt).flush());
    } else {
      this.scram = new ScramServerSession({ user: this.user, secret });
      this.state = 'sasl-initial';
      this.socket.write(m.writeAuthenticationSASL(this.writer, this.scram.mechanisms).flush());
    }
  }

  private handleAuthMessage(): void {
    const f = this.framer;
    if (f.type === m.FrontendType.Terminate) {
      this.close();
      return;
    }
    if (this.state === 'md5') {
      const response = m.decodePasswordMessage(f.buffer, f.bodyStart, f.end);
      verifyMd5Response({ user: this.user, secret: this.secret, salt: this.salt!, response });
      this.pool?.rememberSecret(this.secret);
      this.finishAuth(null);
    } else if (this.state === 'sasl-initial') {
      const { mechanism, data } = m.decodeSASLInitialResponse(f.buffer, f.bodyStart, f.end);
      this.socket.write(m.writeAuthenticationSASLContinue(this.writer, this.scram!.handleInitialResponse(mechanism, data)).flush());
      this.state = 'sasl-response';
    } else if (this.state === 'sasl-response') {
      const final = this.scram!.handleResponse(m.decodeSASLResponse(f.buffer, f.bodyStart, f.end));
      const keys = this.scram!.passThroughKeys();
      if (keys !== null) this.pool?.rememberScramKeys(keys);
      this.pool?.rememberSecret(this.secret);
      this.finishAuth(final);
    }
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
          if (t === m.FrontendType.Query && this.mode === 'transaction') this.noteSql(f.buffer, f.bodyStart, f.end - 1);
        } else if (t === m.FrontendType.Parse) {
          this.midBatch = true;
          if (this.mode === 'transaction') {
            const textStart = f.buffer.indexOf(0, f.bodyStart) + 1;
            const textEnd = f.buffer.indexOf(0, textStart);
            if (textStart > 0 && textEnd > 0 && textEnd < f.end) this.noteSql(f.buffer, textStart, textEnd);
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
          if (portalEnd >= 0 && portalEnd + 1 < f.end && f.buffer[portalEnd + 1] !== 0) inject = this.needsPrepare(server, portalEnd + 1);
        } else if (t === m.FrontendType.Describe) {
          this.midBatch = true;
          if (f.buffer[f.bodyStart] === TargetKindByte.Statement && f.buffer[f.bodyStart + 1] !== 0) inject = this.needsPrepare(server, f.bodyStart + 1);
        } else if (t === m.FrontendType.Close) {
          this.midBatch = true;
          if (f.buffer[f.bodyStart] === TargetKindByte.Statement && f.buffer[f.bodyStart + 1] !== 0) {
            const name = m.decodeClose(f.buffer, f.bodyStart, f.end).name;
            this.statements.delete(name);
            server.forgetPrepared(name);
          }
          server.pushExpect(Expect.ClientClose);
        } else if (t !== m.FrontendType.CopyData && t !== m.FrontendType.CopyDone && t !== m.FrontendType.CopyFail) {
          this.midBatch = true;
        }
        if (inject) {
          // Several writes follow: batch them.
          spans.corkNow();
          spans.flush();
          if (this.prepareOn(server, t)) {
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

  /** Transaction mode: what the SQL text buf[start, end) of a Query or Parse does to session state (see updatePins). */
  private noteSql(buf: Buffer, start: number, end: number): void {
    this.sqlEffects |= leadingEffects(buf, start, end);
    const advisory = advisoryEffect(buf, start, end);
    if (advisory !== 0) {
      this.advisoryLocks = advisory === ADVISORY_UNLOCK_ALL ? 0 : Math.max(0, this.advisoryLocks + advisory);
      this.sqlEffects |= ADVISORY_CHANGED;
    }
  }

  /** True when the statement named at `nameAt` (a Bind's or Describe's) must first be prepared on `server`. */
  private needsPrepare(server: ServerConn, nameAt: number): boolean {
    const f = this.framer;
    const nul = f.buffer.indexOf(0, nameAt);
    const name = f.buffer.toString('latin1', nameAt, nul < 0 ? f.end : nul);
    const mine = this.statements.get(name);
    if (mine === undefined) return false; // unknown to us: let the server answer as it would
    const theirs = server.preparedStatement(name);
    if (theirs === mine) return false;
    if (theirs === undefined || !theirs.parse.equals(mine.parse)) return true;
    // Another client's statement (or an earlier one of this client) of the same name and text: it serves this
    // client only with the shape this client learnt. Not known here: prepared again, and checked.
    const known = mine.shape;
    if (known === null) return false;
    const there = theirs.shape;
    return there === null || there.params !== known.params || there.result !== known.result;
  }

  /**
   * A named Parse from the client, or a Bind/Describe of a statement this server connection lacks: writes what
   * the server must have first (Close of a stale statement, the client's Parse), whose answers are swallowed,
   * then the client's message itself.
   *
   * Result shapes (transaction mode, see statement-shape.ts): a Describe('S') follows the client's Parse, and its
   * answers become the statement's shape. A statement with a shape that is prepared again is described again and
   * the client's message waits for the comparison: then true is returned, the message is not written, and
   * onShapeChecked goes on. One round trip, only when a statement is first used on another server connection.
   * A statement without a shape (its Parse was answered by the proxy while its server connection was lost, or
   * this is session mode, where connections do not change under a statement) is prepared again unchecked, as
   * before, and its shape is recorded from there on (transaction mode).
   */
  private prepareOn(server: ServerConn, type: number): boolean {
    const f = this.framer;
    const out = server.socket;
    const w = server.messageWriter;
    if (type === m.FrontendType.Parse) {
      const name = f.buffer.toString('latin1', f.bodyStart, f.buffer.indexOf(0, f.bodyStart));
      const copy = Buffer.from(f.buffer.subarray(f.start, f.end));
      const statement: ClientStatement = { parse: copy, shape: null };
      this.statements.set(name, statement);
      if (server.preparedStatement(name) !== undefined) {
        out.write(m.writeClose(w, 'S', name).flush());
        server.pushExpect(Expect.InjectedClose);
      }
      server.rememberPrepared(name, statement);
      server.pushParse(Expect.NamedClientParse, name);
      out.write(copy);
      if (this.mode === 'transaction') {
        // If the Parse fails, PostgreSQL skips this Describe: its entry goes at the next ReadyForQuery.
        out.write(m.writeDescribe(w, 'S', name).flush());
        server.pushDescribe(Expect.RecordDescribe, statement);
      }
      return false;
    }
    const nameAt = type === m.FrontendType.Bind ? f.buffer.indexOf(0, f.bodyStart) + 1 : f.bodyStart + 1;
    const name = f.buffer.toString('latin1', nameAt, f.buffer.indexOf(0, nameAt));
    const mine = this.statements.get(name)!;
    if (server.preparedStatement(name) !== undefined) {
      out.write(m.writeClose(w, 'S', name).flush());
      server.pushExpect(Expect.InjectedClose);
    }
    out.write(mine.parse);
    server.pushParse(Expect.InjectedParse, name);
    server.rememberPrepared(name, mine);
    if (mine.shape !== null) {
      // Flush: PostgreSQL sends the answers now, not at the client's Sync (which waits behind this check).
      m.writeDescribe(w, 'S', name);
      out.write(m.writeFlush(w).flush());
      server.pushDescribe(Expect.CheckDescribe, mine);
      this.checking = true;
      this.checked = mine;
      this.checkedName = name;
      return true;
    }
    if (this.mode === 'transaction') {
      out.write(m.writeDescribe(w, 'S', name).flush());
      server.pushDescribe(Expect.RecordDescribe, mine);
    }
    writeSpan(out, f.buffer, f.start, f.end, this.native);
    return false;
  }

  /**
   * The shape check of the current frame's statement (a Bind or Describe('S') of it) is resolved. Same shape, or
   * no comparison because PostgreSQL skips the batch after an error (Abandoned): the frame goes on as it is. Another
   * shape: the client gets PostgreSQL's own answer for that, ERROR 0A000 "cached plan must not change result type",
   * in place of the frame's answer. The statement is closed on the server and a Bind of it sent instead of the
   * frame: PostgreSQL fails it (26000, replaced by the 0A000, see Expect.PoisonBind) and skips the rest of the
   * batch up to Sync, leaving the transaction failed where there is one, exactly as for a changed result type.
   * The client's record keeps the shape it learnt, so each use fails again until it prepares the statement again.
   */
  onShapeChecked(conn: ServerConn, result: ShapeCheck): void {
    if (conn !== this.server || !this.checking) return;
    this.checking = false;
    const statement = this.checked!;
    this.checked = null;
    if (result === ShapeCheck.Changed) {
      const f = this.framer;
      const name = this.checkedName;
      const w = conn.messageWriter;
      m.writeClose(w, 'S', name);
      m.writeBind(w, '', name);
      conn.socket.write(w.flush());
      conn.pushExpect(Expect.InjectedClose);
      const describe = f.type === m.FrontendType.Describe;
      conn.pushPoisonBind(describe && statement.shape !== null ? Buffer.from(statement.shape.params, 'latin1') : null);
      conn.forgetPrepared(name);
      this.held = false; // answered by the error instead
    }
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
    if (conn.hasSessionTags || this.sqlEffects !== 0) this.updatePins(conn);
    if (status === TransactionStatusByte.Idle && conn.outstanding === 0 && !this.midBatch && !this.held && this.pins === 0) {
      this.releaseServer();
    }
  }

  /**
   * Transaction mode: pins the client to `conn` while it holds session state that would otherwise leak to the
   * next client (advisory locks, LISTEN, a session SET/RESET, SQL PREPARE, a WITH HOLD cursor, a temp table),
   * and unpins it when the state is released (advisory locks counted back to 0 or pg_advisory_unlock_all,
   * UNLISTEN *, RESET ALL, DISCARD ALL). A SET is pinned rather than remembered and replayed: replaying needs
   * the value as the server parsed it (lists, units, DEFAULT, FROM CURRENT), while pinning is always right.
   */
  private updatePins(conn: ServerConn): void {
    const tags = conn.takeSessionTags();
    const effects = this.sqlEffects;
    this.sqlEffects = 0;
    let pins = this.pins;
    if ((effects & SqlEffect.DiscardAll) !== 0) {
      pins = 0;
      this.advisoryLocks = 0;
      conn.sessionDiscarded();
    }
    if ((effects & SqlEffect.ResetAll) !== 0) {
      pins &= ~Pin.Set;
      // The connection now has the server's defaults: the client's own settings are applied again on attach.
      conn.forgetSettings();
    }
    if ((effects & SqlEffect.UnlistenAll) !== 0) pins &= ~Pin.Listen;
    if ((tags & SessionTag.Set) !== 0) {
      // A SET that is transaction-scoped or of a followed parameter (see onParameterStatus) leaves nothing to pin for,
      // unless another SET of the same batch does.
      const harmless = (effects & (SqlEffect.ExemptSet | SqlEffect.FollowedSet)) !== 0 && (effects & SqlEffect.PinningSet) === 0;
      if (!harmless) pins |= Pin.Set;
    }
    if ((tags & SessionTag.Listen) !== 0) pins |= Pin.Listen;
    if ((tags & SessionTag.Prepare) !== 0) pins |= Pin.Prepare;
    if ((tags & SessionTag.DeclareCursor) !== 0 && (effects & SqlEffect.HoldCursor) !== 0) pins |= Pin.HoldCursor;
    if ((effects & SqlEffect.TempTable) !== 0) pins |= Pin.TempTable;
    pins = this.advisoryLocks > 0 ? pins | Pin.Advisory : pins & ~Pin.Advisory;
    if (pins === this.pins) return;
    const counters = this.pool!.counters;
    if (this.pins === 0) {
      counters.pinnedClients++;
      this.host.onPin?.(this, pinReasons(pins));
    } else if (pins === 0) {
      counters.pinnedClients--;
    }
    this.pins = pins;
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
    return this.pins !== 0;
  }

  /**
   * The server connection ended under this client. When PostgreSQL said why (a FATAL: pg_terminate_backend 57P01,
   * a shutdown, a timeout), the client is told PostgreSQL's own error, else the proxy's 08006.
   */
  onServerLost(conn: ServerConn, message: string): void {
    if (this.server !== conn) return;
    // A shape check cannot be answered any more: its frame (still current, held) is the lost transaction's.
    this.checking = false;
    this.checked = null;
    const error = conn.serverError;
    const loss = { outstanding: conn.outstanding, inTransaction: conn.status !== TransactionStatusByte.Idle, midBatch: this.midBatch, reason: message, error };
    // A pinned client's session state (locks, LISTEN, settings) died with the connection: it cannot go on.
    const pinned = this.pins !== 0;
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
      const outcome = this.lost.handle(f.type, f.buffer, f.start, f.bodyStart, f.end, w, this.statements);
      if (outcome === LostOutcome.Consumed) continue;
      this.lost = null;
      // The frame stays current: forward() sends it to a server.
      if (outcome === LostOutcome.Pass) this.held = true;
    }
    this.socket.write(w.flush());
  }

  /**
   * One sweep of idle_transaction_timeout / client_idle_timeout (ms, 0: off). Idle means no byte moved on the
   * client's or its server's socket since the previous sweeps and no answer owed, so the hot path pays nothing.
   * PgBouncer's words and SQLSTATE (FATAL 08P01), so tools that recognise them keep working.
   */
  checkIdle(now: number, idleInTransactionMs: number, clientIdleMs: number): void {
    if (this.state !== 'ready') return;
    const server = this.server;
    const bytes = this.socket.bytesRead + this.socket.bytesWritten + (server === null ? 0 : server.socket.bytesRead + server.socket.bytesWritten);
    if (bytes !== this.idleBytes) {
      this.idleBytes = bytes;
      this.idleSince = now;
      return;
    }
    if (this.waiting || this.checking || (server !== null && server.outstanding > 0)) return;
    const idleFor = now - this.idleSince;
    const inTransaction = (server !== null && server.status !== TransactionStatusByte.Idle) || (this.lost?.inTransaction ?? false);
    if (idleInTransactionMs > 0 && inTransaction && idleFor > idleInTransactionMs) {
      this.fail(new PgProtocolError(SQLSTATE.PROTOCOL_VIOLATION, 'idle transaction timeout'));
    } else if (clientIdleMs > 0 && idleFor > clientIdleMs) {
      this.fail(new PgProtocolError(SQLSTATE.PROTOCOL_VIOLATION, 'client_idle_timeout'));
    }
  }

  private detachServer(): void {
    const server = this.server;
    if (server === null) return;
    if (this.pins !== 0) {
      this.pins = 0;
      this.pool!.counters.pinnedClients--;
    }
    this.advisoryLocks = 0;
    this.sqlEffects = 0;
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
    return this.secret !== null;
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
      const pinned = this.pins !== 0;
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

/** sqlEffects bit (beside SqlEffect's): the advisory-lock count changed. */
const ADVISORY_CHANGED = 1 << 16;

/** Why a client is pinned to its server connection (transaction mode). */
const enum Pin {
  Advisory = 1,
  Listen = 2,
  Set = 4,
  Prepare = 8,
  HoldCursor = 16,
  TempTable = 32,
}

const PIN_NAMES: readonly [Pin, string][] = [
  [Pin.Advisory, 'advisory lock'],
  [Pin.Listen, 'LISTEN'],
  [Pin.Set, 'SET'],
  [Pin.Prepare, 'PREPARE'],
  [Pin.HoldCursor, 'WITH HOLD cursor'],
  [Pin.TempTable, 'temporary table'],
];

function pinReasons(pins: number): string {
  return PIN_NAMES.filter(([bit]) => (pins & bit) !== 0)
    .map(([, name]) => name)
    .join(', ');
}
