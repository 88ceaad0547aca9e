/**
 * One connection from the proxy to PostgreSQL: login (SCRAM with a password or pass-through keys, md5,
 * cleartext), then forwarding of whole server frames to the client it is attached to.
 *
 * The forwarding path keeps the hot-path rules (docs/decisions/0011-proxy-read-buffer-and-cork.md): frames are
 * views into the received chunk (read into a
 * reused buffer, see onRead); consecutive frames that go to the client unchanged are written as one slice of
 * that chunk (cork/uncork only when one answer needs several writes); the only
 * frames looked at are ReadyForQuery, ParseComplete/CloseComplete (to swallow answers to messages the proxy
 * injected), ErrorResponse (FATAL ones), short CommandComplete tags (session state, see session-state.ts),
 * ParameterDescription/RowDescription/NoData only while the proxy's own Describe of a statement is owed (result
 * shapes, see statement-shape.ts), and nothing else.
 */
import { connect, type Socket } from 'node:net';
import { md5PasswordResponse } from '../auth/md5.js';
import { SCRAM_SHA_256, type ScramKeys } from '../../protocol/scram.js';
import { ScramClientSession } from '../auth/scram.js';
import { PgProtocolError, SQLSTATE } from '../protocol/errors.js';
import { SslResponse, TransactionStatusByte } from '../protocol/constants.js';
import { MessageFramer } from '../protocol/framer.js';
import * as m from '../protocol/messages.js';
import { MessageWriter } from '../protocol/writer.js';
import { type ServerTls, serverTlsConnectOptions } from '../server-tls.js';
import type { Endpoint } from '../topology.js';
import { connect as tlsConnect } from 'node:tls';
import { SessionTag, sessionTagOf } from '../protocol/session-state.js';
import type { PoolCounters } from './counters.js';
import { NativeWire } from '../wire/native-wire.js';
import { SpanWriter } from '../wire/span-writer.js';
import type { Wire } from '../wire/wire.js';
import { wallNow } from '../clock.js';
import { IntQueue } from './int-queue.js';
import { CACHED_PLAN_CHANGED, type ClientStatement, NO_DATA, ShapeCheck, resultShapeKey } from './statement-shape.js';

/** Above this many bytes waiting in the peer's socket, stop reading (back pressure). */
export const HIGH_WATER_MARK = 256 * 1024;
/** Size of a server connection's read buffer: net's default read size. */
const READ_BUFFER_SIZE = 64 * 1024;

/** How the proxy proves itself to PostgreSQL as `user`. */
export interface ServerCredentials {
  /** A plain password (any method works with it). */
  password?: string;
  /** A stored md5 secret (md5 only). */
  md5Secret?: string;
  /** Keys recovered from a client's SCRAM exchange (SCRAM only). */
  scramKeys?: ScramKeys;
}

/** What a server connection needs from the client it serves; implemented by ProxyClient. */
export interface ServerConnPeer {
  readonly socket: Wire;
  /** The server said ReadyForQuery; the peer decides whether to give the connection back. */
  onServerReady(conn: ServerConn, status: number): void;
  /** The connection failed while attached; `message` says why. */
  onServerLost(conn: ServerConn, message: string): void;
  /** A reported parameter changed (a SET, RESET or their rollback) and the peer is being told so. */
  onParameterStatus?(conn: ServerConn, name: string, value: string): void;
  /** The shape check the peer asked for (pushDescribe CheckDescribe) is resolved. */
  onShapeChecked?(conn: ServerConn, result: ShapeCheck): void;
}

/** Kinds of answers the server owes, in the order it will send them. */
export const enum Expect {
  ClientParse = 0,
  InjectedParse = 1,
  /** Sync, Query or FunctionCall: answered by ReadyForQuery. */
  Sync = 2,
  ClientClose = 3,
  InjectedClose = 4,
  /** A simple query the proxy sent (settings, reset): everything up to its ReadyForQuery is swallowed. */
  InjectedQuery = 5,
  /** The client's own Parse of a named statement (answered like ClientParse; its name is tracked). */
  NamedClientParse = 6,
  /**
   * The proxy's Describe of a statement the client just prepared: its ParameterDescription and RowDescription
   * (or NoData) are swallowed and become the statement's shape.
   */
  RecordDescribe = 7,
  /**
   * The proxy's Describe of a statement it prepared again for the client: its answers are swallowed and compared
   * with the statement's shape; the peer is told (onShapeChecked) and holds its messages until then.
   */
  CheckDescribe = 8,
  /**
   * A Bind of a statement the proxy has just closed, sent so that PostgreSQL fails the rest of the batch as it would
   * have for a statement whose result type changed: its ErrorResponse (26000) is replaced by 0A000.
   */
  PoisonBind = 9,
}

let nextConnId = 1;

export class ServerConn {
  readonly id = nextConnId++;
  /** The connection as forwarding sees it: the Node socket, or the NativeWire that took it over after login. */
  socket: Wire;
  /** The Node socket (TLS once negotiated) used for login, and for good with `ownSocket` (auth_query). */
  tcp: Socket;
  /** Forwarding reads through a NativeWire: chunks are views of its arena, valid only during handleData. */
  private native = false;
  peer: ServerConnPeer | null = null;
  readonly params = new Map<string, string>();
  backendPid = 0;
  backendSecret = 0;
  /** Ms since the epoch (the pool's clock) when it was made, for server_lifetime; and when it last went idle. */
  readonly createdAt: number;
  idleSince: number;
  closed = false;
  /** Transaction status byte from the last ReadyForQuery (TransactionStatusByte). */
  status: number = TransactionStatusByte.Idle;
  /** Key of the settings applied with SQL (see session-params.ts); '' when unknown (after a reset). */
  private settingsApplied = '[]';
  /**
   * Named prepared statements this connection holds: name → the client's statement whose Parse made it here (its
   * shape, once known, is the one PostgreSQL holds for it here). Clients with statements of the same name, text and
   * shape share it.
   */
  private readonly prepared = new Map<string, ClientStatement>();

  private readonly framer = new MessageFramer();
  private readonly writer = new MessageWriter(1024);
  /** Writes the frames forwarded to the peer (reused for every read). */
  private readonly spans = new SpanWriter();
  /** What the server owes (Expect values), oldest first. */
  private readonly expect = new IntQueue();
  /** Statement names of the InjectedParse / NamedClientParse entries in `expect`, oldest first. */
  private readonly parseNames: string[] = [];
  /** ReadyForQuery messages still owed (Sync/Query entries in `expect`). */
  outstanding = 0;
  /** The statements of the RecordDescribe / CheckDescribe entries in `expect`, oldest first. */
  private readonly describeFor: ClientStatement[] = [];
  /** The ParameterDescription of the Describe owed at the head of `expect`, until its RowDescription/NoData comes. */
  private describedParams = '';
  /** A CheckDescribe is owed and not resolved yet: the peer holds its messages. */
  private checking = false;
  /** What the PoisonBind's error is replaced with before the 0A000: the client's ParameterDescription (Describe S). */
  private poisonParams: Buffer | null = null;
  /** SessionTag bits of CommandComplete tags forwarded since the attached client last took them (takeSessionTags). */
  private tags = 0;
  /** Where the attached client's pool counts bytes, queries and transactions; set on attach. */
  private counters: PoolCounters | null = null;
  /** clock.now() when the running query / transaction began; 0 while none runs (beginQuery, finishQuery). */
  private queryStartedAt = 0;
  private xactStartedAt = 0;
  /** clock.now() when the last request sent on this connection started (SHOW SERVERS' request_time); 0: none. */
  private requestStarted = 0;
  private fatal: string | null = null;
  /**
   * The FATAL (or PANIC) ErrorResponse PostgreSQL sent before ending this connection (pg_terminate_backend, a
   * shutdown, idle_in_transaction_session_timeout, ...), or null: the attached client is told PostgreSQL's own
   * SQLSTATE and message rather than the proxy's 08006 (see ProxyClient.onServerLost).
   */
  serverError: m.ErrorFields | null = null;
  private loginDone = false;
  private readonly onData = (chunk: Buffer): void => this.handleData(chunk, 0, chunk.length);
  private readonly onNativeData = (buf: Buffer, start: number, end: number): void => this.handleData(buf, start, end);
  private readonly onDrain = (): void => this.peerDrainedUs();
  private onIdleClose: ((conn: ServerConn) => void) | null = null;
  /**
   * The plain TCP socket reads into this buffer (net's `onread`), not into a fresh Buffer per read handed
   * through the Readable stream: no allocation, no stream bookkeeping per answer. The next read reuses it only
   * when nothing refers to the bytes of the last one (see onRead); otherwise a new one takes its place.
   */
  private readBuffer = Buffer.allocUnsafe(READ_BUFFER_SIZE);
  /** Bytes of the last read are still referenced (a split frame in the framer, a write queued in the peer's socket). */
  private readBufferRetained = false;
  /** Logged in and forwarding (handleData reads the socket); before that, login's 'data' listeners do. */
  private forwarding = false;

  constructor(
    readonly endpoint: Endpoint,
    createdAt: number = wallNow(),
  ) {
    this.createdAt = createdAt;
    this.idleSince = createdAt;
    const raw: Socket = connect({
      host: endpoint.host,
      port: endpoint.port,
      noDelay: true,
      onread: { buffer: () => this.nextReadBuffer(), callback: (nread: number, buf: Uint8Array): boolean => this.onRead(raw, nread, buf as Buffer) },
    });
    this.socket = this.tcp = raw;
  }

  /**
   * A read on the plain TCP socket (once TLS is on, the TLSSocket emits 'data' instead and this is not called).
   * Login and auth_query listen for 'data' and may keep what they get: they are handed a copy.
   */
  private onRead(raw: Socket, nread: number, buffer: Buffer): boolean {
    if (!this.forwarding) {
      raw.emit('data', Buffer.from(buffer.subarray(0, nread)));
      return true;
    }
    this.handleData(buffer, 0, nread);
    if (this.framer.bufferedBytes > 0) this.readBufferRetained = true;
    return true;
  }

  private nextReadBuffer(): Buffer {
    if (this.readBufferRetained) {
      this.readBufferRetained = false;
      this.readBuffer = Buffer.allocUnsafe(READ_BUFFER_SIZE);
    }
    return this.readBuffer;
  }

  /**
   * Logs in (over TLS first when `tls` is given: SSLRequest, then the handshake; `socket` is then the TLSSocket);
   * resolves once PostgreSQL said ReadyForQuery. Rejects with a PgProtocolError on any failure. With
   * `ownSocket` the caller reads the socket itself afterwards (auth_query) instead of the forwarding path.
   */
  login(options: {
    user: string;
    database: string;
    credentials: ServerCredentials;
    connectTimeoutMs: number;
    requirePrimary?: boolean;
    tls?: ServerTls | null;
    startupParams?: Readonly<Record<string, string>>;
    ownSocket?: boolean;
    /** Forward through a NativeWire once logged in (plain TCP only). */
    nativeIo?: boolean;
  }): Promise<void> {
    const { user, database, credentials } = options;
    const tls = options.tls ?? null;
    const where = `server ${this.endpoint.host}:${this.endpoint.port}`;
    return new Promise<void>((resolve, reject) => {
      let socket = this.tcp;
      let scram: ScramClientSession | null = null;
      // rw connections: etcd may still name a server that has just been demoted; ask the server itself once.
      let checking = false;
      let inRecovery: string | null = null;
      const fail = (e: PgProtocolError): void => {
        clearTimeout(timer);
        this.destroy();
        reject(e);
      };
      const timer = setTimeout(
        () => fail(new PgProtocolError(SQLSTATE.CONNECTION_FAILURE, `could not connect to server ${this.endpoint.host}:${this.endpoint.port}: timeout`)),
        options.connectTimeoutMs,
      );
      const sendStartup = (): void => {
        socket.on('data', onLoginData);
        socket.write(m.writeStartupMessage(this.writer, { ...options.startupParams, user, database }).flush());
      };
      socket.once('connect', () => {
        if (tls === null) {
          sendStartup();
          return;
        }
        socket.on('data', onSslAnswer);
        socket.write(m.writeSSLRequest(this.writer).flush());
      });
      let onError = (e: Error): void => fail(new PgProtocolError(SQLSTATE.CONNECTION_FAILURE, `could not connect to ${where}: ${e.message}`));
      const onClose = (): void => fail(new PgProtocolError(SQLSTATE.CONNECTION_FAILURE, `${where} closed the connection during login`));
      socket.on('error', onError);
      socket.on('close', onClose);
      const onSslAnswer = (chunk: Buffer): void => {
        socket.off('data', onSslAnswer);
        const mode = tls!.sslmode;
        // Bytes after the answer were not protected by TLS (CVE-2021-23222): refuse rather than read them.
        if (chunk.length !== 1 || (chunk[0] !== SslResponse.Accept && chunk[0] !== SslResponse.Refuse)) {
          fail(new PgProtocolError(SQLSTATE.PROTOCOL_VIOLATION, `${where} answered the SSLRequest with unexpected data`));
          return;
        }
        if (chunk[0] === SslResponse.Refuse) {
          if (mode === 'prefer') sendStartup();
          else {
            fail(new PgProtocolError(SQLSTATE.CONNECTION_FAILURE, `${where} does not support TLS, which server_tls_sslmode ${mode} requires`, {
              hint: 'Turn on ssl in the server\'s postgresql.conf, or set server_tls_sslmode to prefer or disable.',
            }));
          }
          return;
        }
        socket.off('error', onError);
        socket.off('close', onClose);
        const secure = tlsConnect({ socket, ...serverTlsConnectOptions(this.endpoint, tls!) });
        this.socket = this.tcp = socket = secure;
        onError = (e: Error): void =>
          fail(new PgProtocolError(SQLSTATE.CONNECTION_FAILURE, `TLS to ${where} failed (server_tls_sslmode ${mode}): ${e.message}`, {
            hint:
              mode === 'verify-full'
                ? 'The server\'s certificate must be signed by a CA in server_tls_ca_file and name the host the proxy connects to.'
                : mode === 'verify-ca'
                  ? 'The server\'s certificate must be signed by a CA in server_tls_ca_file.'
                  : undefined,
          }));
        secure.on('error', onError);
        secure.on('close', onClose);
        secure.once('secureConnect', sendStartup);
      };
      const onLoginData = (chunk: Buffer): void => {
        const f = this.framer;
        f.push(chunk);
        try {
          while (f.next()) {
            const t = f.type;
            if (t === m.BackendType.Authentication) {
              const request = m.decodeAuthentication(f.buffer, f.bodyStart, f.end);
              const w = this.writer;
              if (request.kind === 'ok') continue;
              if (request.kind === 'sasl') {
                if (!request.mechanisms.includes(SCRAM_SHA_256)) throw new PgProtocolError(SQLSTATE.FEATURE_NOT_SUPPORTED, 'server offers no SCRAM-SHA-256');
                if (credentials.password === undefined && credentials.scramKeys === undefined) throw noCredentials(user, 'SCRAM');
                scram = new ScramClientSession(credentials.password !== undefined ? { password: credentials.password } : { keys: credentials.scramKeys! });
                socket.write(m.writeSASLInitialResponse(w, SCRAM_SHA_256, scram.initialResponse()).flush());
              } else if (request.kind === 'sasl-continue' && scram !== null) {
                socket.write(m.writeSASLResponse(w, scram.handleContinue(request.data)).flush());
              } else if (request.kind === 'sasl-final' && scram !== null) {
                scram.handleFinal(request.data);
              } else if (request.kind === 'md5-password') {
                const secret = credentials.password ?? credentials.md5Secret;
                if (secret === undefined) throw noCredentials(user, 'md5');
                socket.write(m.writePasswordMessage(w, md5PasswordResponse(secret, user, request.salt)).flush());
              } else if (request.kind === 'cleartext-password') {
                if (credentials.password === undefined) throw noCredentials(user, 'password');
                socket.write(m.writePasswordMessage(w, credentials.password).flush());
              } else {
                throw new PgProtocolError(SQLSTATE.FEATURE_NOT_SUPPORTED, `server asks for authentication method ${request.code}, which the proxy does not speak`);
              }
            } else if (t === m.BackendType.ErrorResponse) {
              const fields = m.decodeErrorFields(f.buffer, f.bodyStart, f.end);
              throw new PgProtocolError(fields.code, fields.message, fields.detail === undefined ? {} : { detail: fields.detail });
            } else if (t === m.BackendType.ParameterStatus) {
              const { name, value } = m.decodeParameterStatus(f.buffer, f.bodyStart, f.end);
              this.params.set(name, value);
            } else if (t === m.BackendType.BackendKeyData) {
              const key = m.decodeBackendKeyData(f.buffer, f.bodyStart, f.end);
              this.backendPid = key.pid;
              this.backendSecret = key.secretKey;
            } else if (t === m.BackendType.DataRow && checking) {
              const length = f.buffer.readInt32BE(f.bodyStart + 2);
              inRecovery = length < 0 ? null : f.buffer.toString('latin1', f.bodyStart + 6, f.bodyStart + 6 + length);
            } else if (t === m.BackendType.ReadyForQuery && options.requirePrimary === true && !checking) {
              checking = true;
              socket.write(m.writeQuery(this.writer, 'SELECT pg_is_in_recovery()').flush());
            } else if (t === m.BackendType.ReadyForQuery) {
              if (checking && inRecovery !== 'f') {
                throw new PgProtocolError(SQLSTATE.CONNECTION_FAILURE, `server ${this.endpoint.host}:${this.endpoint.port} is not a primary (in recovery)`);
              }
              clearTimeout(timer);
              socket.off('data', onLoginData);
              socket.off('error', onError);
              socket.off('close', onClose);
              this.loginDone = true;
              if (options.ownSocket === true) {
                resolve();
                return;
              }
              this.forwarding = true;
              const wire = tls === null && options.nativeIo === true ? NativeWire.adopt(socket) : null;
              if (wire !== null) {
                this.native = true;
                wire.onData = this.onNativeData;
                wire.onDrain = this.onDrain;
                wire.onClose = () => this.handleClose();
                this.socket = wire;
              } else {
                socket.on('data', this.onData);
                socket.on('drain', this.onDrain);
                socket.on('error', () => undefined);
                socket.on('close', () => this.handleClose());
              }
              resolve();
              return;
            }
          }
        } catch (e) {
          fail(e instanceof PgProtocolError ? e : new PgProtocolError(SQLSTATE.CONNECTION_FAILURE, `login to server failed: ${(e as Error).message}`));
        }
      };
    });
  }

  /** Called by the pool for a connection that dies while idle. */
  setIdleCloseHandler(handler: (conn: ServerConn) => void): void {
    this.onIdleClose = handler;
  }

  /** `peer` forwards through this connection from now on; its pool's `counters` count what runs here. */
  attach(peer: ServerConnPeer, counters: PoolCounters): void {
    this.peer = peer;
    this.counters = counters;
    this.tags = 0;
  }

  detach(now: number = wallNow()): void {
    this.peer = null;
    this.idleSince = now;
  }

  /**
   * Records a Parse of the named statement `name` (InjectedParse or NamedClientParse). If PostgreSQL does not
   * answer it with ParseComplete (the Parse failed, or an earlier error made it skip it) the statement is not
   * prepared on this connection, and `prepared` forgets it so that its next use prepares it again.
   */
  pushParse(kind: Expect.InjectedParse | Expect.NamedClientParse, name: string): void {
    this.expect.push(kind);
    this.parseNames.push(name);
  }

  /**
   * Records a Describe('S') of `statement` the proxy sent: RecordDescribe stores its shape, CheckDescribe compares
   * the shape with the one stored and tells the peer (onShapeChecked).
   */
  pushDescribe(kind: Expect.RecordDescribe | Expect.CheckDescribe, statement: ClientStatement): void {
    this.expect.push(kind);
    this.describeFor.push(statement);
    if (kind === Expect.CheckDescribe) this.checking = true;
  }

  /**
   * Records a Bind of a statement just closed (see Expect.PoisonBind); `params`: the ParameterDescription to send
   * the client before the error, as PostgreSQL does when a Describe('S') fails this way.
   */
  pushPoisonBind(params: Buffer | null): void {
    this.expect.push(Expect.PoisonBind);
    this.poisonParams = params;
  }

  /** clock.now() when the last request sent on this connection started (SHOW SERVERS' request_time); 0: none. */
  get requestStartedAt(): number {
    return this.requestStarted;
  }

  /** A query runs (a client message was sent since the last ReadyForQuery that owed nothing more). */
  get queryRunning(): boolean {
    return this.queryStartedAt !== 0;
  }

  /** The first client message of a request is sent at `now` (clock.now()): its query, and maybe a transaction, start. */
  beginQuery(now: number): void {
    this.queryStartedAt = now;
    this.requestStarted = now;
    if (this.xactStartedAt === 0) this.xactStartedAt = now;
  }

  /**
   * A ReadyForQuery with `status` arrived at `now`: counts one query, timed from beginQuery (a next one runs on
   * at once when more answers are owed), and one transaction when the status is idle.
   */
  finishQuery(now: number, status: number): void {
    const counters = this.counters!;
    counters.recordQuery(this.queryStartedAt === 0 ? 0 : Math.round((now - this.queryStartedAt) * 1000));
    this.queryStartedAt = this.outstanding > 0 ? now : 0;
    if (status === TransactionStatusByte.Idle) {
      counters.recordXact(this.xactStartedAt === 0 ? 0 : Math.round((now - this.xactStartedAt) * 1000));
      this.xactStartedAt = 0;
    }
  }

  /** SessionTag bits of the CommandComplete tags forwarded since the last call; cleared. */
  takeSessionTags(): number {
    const tags = this.tags;
    this.tags = 0;
    return tags;
  }

  /** True when CommandComplete tags of session state were forwarded since the last takeSessionTags. */
  get hasSessionTags(): boolean {
    return this.tags !== 0;
  }

  /** Forgets the session tags seen so far (the client they concern leaves the connection). */
  clearSessionTags(): void {
    this.tags = 0;
  }

  /** Key of the client settings this connection has (session-params.ts settingsKey); '' when unknown. */
  get settingsKey(): string {
    return this.settingsApplied;
  }

  /** Gives the connection the client settings `key` with `sql` (RESET ALL and SETs) unless it has them already. */
  applySettings(key: string, sql: string): void {
    if (this.settingsApplied === key) return;
    this.injectQuery(sql);
    this.settingsApplied = key;
  }

  /** The settings changed on the connection itself (a followed parameter the client SET here): it has `key` now. */
  settingsChanged(key: string): void {
    this.settingsApplied = key;
  }

  /** The server's defaults replaced the settings (RESET ALL): applied again on the next attach. */
  forgetSettings(): void {
    this.settingsApplied = '';
  }

  /** The statement named `name` as prepared here, or undefined. */
  preparedStatement(name: string): ClientStatement | undefined {
    return this.prepared.get(name);
  }

  /** `statement`'s Parse was sent here under `name` (forgotten again if PostgreSQL does not answer ParseComplete). */
  rememberPrepared(name: string, statement: ClientStatement): void {
    this.prepared.set(name, statement);
  }

  /** The statement named `name` was closed here. */
  forgetPrepared(name: string): void {
    this.prepared.delete(name);
  }

  /**
   * Sends `sql` (DISCARD ALL, server_reset_query) to drop the session state of the client leaving: no statement
   * stays prepared, and the settings are the server's.
   */
  resetSession(sql: string): void {
    this.injectQuery(sql);
    this.prepared.clear();
    this.settingsApplied = '';
  }

  /** DISCARD ALL ran on the connection (the client's own): nothing prepared, the server's settings. */
  sessionDiscarded(): void {
    this.prepared.clear();
    this.settingsApplied = '';
  }

  /** Records what the server will answer for a message the client sent (or the proxy injected). */
  pushExpect(kind: Expect): void {
    this.expect.push(kind);
    if (kind === Expect.Sync || kind === Expect.InjectedQuery) this.outstanding++;
  }

  /** Sends a simple query whose answers the client never sees (settings, reset query). */
  injectQuery(sql: string): void {
    this.pushExpect(Expect.InjectedQuery);
    this.socket.write(m.writeQuery(this.writer, sql).flush());
  }

  /** Bytes for the server built by the proxy (injected Parse/Close); the caller writes them in order. */
  get messageWriter(): MessageWriter {
    return this.writer;
  }

  /** Asks PostgreSQL to cancel what this connection runs (a new connection, as the protocol wants). */
  cancel(): void {
    const socket = connect({ host: this.endpoint.host, port: this.endpoint.port });
    socket.on('error', () => socket.destroy());
    socket.on('connect', () => socket.end(m.writeCancelRequest(new MessageWriter(64), this.backendPid, this.backendSecret).flush()));
    socket.setTimeout(5000, () => socket.destroy());
  }

  /** Polite close: Terminate, then end. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.loginDone && this.socket.writable) this.socket.end(m.writeTerminate(this.writer).flush());
    else this.socket.destroy();
  }

  /** Drops the connection at once; a client waiting on it gets 08006 with `reason`. */
  abort(reason: string): void {
    this.fatal = reason;
    this.destroy();
  }

  destroy(): void {
    this.closed = true;
    this.socket.destroy();
  }

  private handleClose(): void {
    const wasClosed = this.closed;
    this.closed = true;
    const peer = this.peer;
    if (peer !== null) {
      this.peer = null;
      peer.onServerLost(this, this.fatal ?? 'server closed the connection unexpectedly');
    } else if (!wasClosed || this.onIdleClose !== null) {
      this.onIdleClose?.(this);
    }
  }

  private peerDrainedUs(): void {
    this.peer?.socket.resume();
  }

  /** Server bytes buf[start, end): frames forwarded to the attached client, ReadyForQuery and errors looked at. */
  private handleData(buf: Buffer, start: number, end: number): void {
    const f = this.framer;
    const counters = this.counters;
    if (counters !== null) counters.bytesSent += end - start;
    f.pushRange(buf, start, end);
    let peer = this.peer;
    const native = this.native;
    // The usual answer (a whole chunk up to ReadyForQuery) is one write, straight to the client's socket.
    const spans = this.spans;
    spans.begin(peer === null ? null : peer.socket, native);
    try {
      while (f.next()) {
        const t = f.type;
        let forward = true;
        let ready = false;
        /** -1, or a ShapeCheck to tell the peer once what came before is written. */
        let checked = -1;
        let poisoned = false;
        const head = this.expect.peek();
        if (t === m.BackendType.ReadyForQuery) {
          this.status = f.buffer[f.bodyStart];
          // Answers to messages after an error are never sent: drop their entries up to this Sync.
          let popped = -1;
          while (this.expect.length > 0) {
            popped = this.expect.shift();
            if (popped === Expect.Sync || popped === Expect.InjectedQuery) break;
            if (popped === Expect.InjectedParse || popped === Expect.NamedClientParse) this.prepared.delete(this.parseNames.shift()!);
            else if (popped === Expect.RecordDescribe || popped === Expect.CheckDescribe) {
              this.describeFor.shift();
              this.describedParams = '';
              if (popped === Expect.CheckDescribe) this.checking = false;
            }
          }
          if (popped === Expect.Sync || popped === Expect.InjectedQuery) this.outstanding--;
          if (popped === Expect.InjectedQuery) forward = false;
          else ready = true;
        } else if (head === Expect.InjectedQuery) {
          forward = false;
          if (t === m.BackendType.ErrorResponse) this.noteError();
        } else if (t === m.BackendType.ParameterStatus) {
          if (peer !== null && peer.onParameterStatus !== undefined) {
            const { name, value } = m.decodeParameterStatus(f.buffer, f.bodyStart, f.end);
            peer.onParameterStatus(this, name, value);
          }
        } else if (t === m.BackendType.ParseComplete || t === m.BackendType.CloseComplete) {
          if (head >= 0 && head !== Expect.Sync) {
            this.expect.shift();
            if (head === Expect.InjectedParse || head === Expect.NamedClientParse) this.parseNames.shift();
            if (head === Expect.InjectedParse || head === Expect.InjectedClose) forward = false;
          }
        } else if (head >= Expect.RecordDescribe && head <= Expect.CheckDescribe && (t === m.BackendType.ParameterDescription || t === m.BackendType.RowDescription || t === m.BackendType.NoData)) {
          forward = false;
          checked = this.described(head, t);
        } else if (t === m.BackendType.ErrorResponse) {
          if (this.noteError()) {
            forward = false;
          } else if (head === Expect.PoisonBind) {
            this.expect.shift();
            forward = false;
            poisoned = true;
          }
          // An error with no Sync owed before the check: PostgreSQL skips everything up to the next Sync, the
          // proxy's re-prepare and Describe too. The peer sends its held messages on, which are skipped as well.
          if ((forward || poisoned) && this.checking && this.outstanding === 0) {
            this.checking = false;
            checked = ShapeCheck.Abandoned;
          }
        } else if (t === m.BackendType.CommandComplete && f.end - f.bodyStart <= 15) {
          const tag = sessionTagOf(f.buffer, f.bodyStart, f.end);
          // Whoever sent it, PostgreSQL holds no prepared statement any more: they are prepared again when used.
          if (tag === SessionTag.DeallocateAll) this.prepared.clear();
          else this.tags |= tag;
        }
        if (spans.target === null) continue; // nobody to tell: notices and status changes of an idle connection
        if (forward) spans.add(f.buffer, f.start, f.end);
        else spans.flush();
        if (poisoned) {
          // PostgreSQL's answer to the client's Bind/Describe of a statement whose result type changed.
          if (this.poisonParams !== null) {
            spans.writeOwn(this.poisonParams);
            this.poisonParams = null;
          }
          spans.writeOwn(CACHED_PLAN_CHANGED);
        }
        if (checked >= 0) {
          // The peer now writes to this connection (and may end): everything for it so far is written first.
          spans.flush();
          peer!.onShapeChecked?.(this, checked);
          if (this.peer !== peer) {
            peer = this.peerChanged();
            if (peer === null) continue;
          }
        }
        if (ready) {
          spans.flush();
          peer!.onServerReady(this, this.status);
          if (this.peer !== peer) peer = this.peerChanged();
        }
      }
    } catch (e) {
      // A server that breaks the protocol is not trusted any further.
      this.fatal = `server sent an invalid message: ${(e as Error).message}`;
      this.destroy();
    }
    const out = spans.finish();
    if (out !== null) {
      const queued = out.writableLength;
      if (native) {
        if (queued > HIGH_WATER_MARK) this.socket.pause();
      } else if (queued > 0) {
        // Not all written at once: the socket holds views of the chunk (see onRead).
        this.readBufferRetained = true;
        if (queued > HIGH_WATER_MARK) this.socket.pause();
      }
    }
    // The chunk is the arena's: a split frame is kept as a copy (writes to Node sockets were copied by writeSpan).
    if (native && f.bufferedBytes > 0) f.own(false);
  }

  /**
   * The peer changed during handleData (the connection went back to the pool, maybe to another client at once):
   * what was written to the old one is finished, and forwarding goes on to the new one (or nowhere). Returns it.
   */
  private peerChanged(): ServerConnPeer | null {
    const old = this.spans.finish();
    // Not all written at once: the old peer's socket holds views of the chunk (see onRead).
    if (old !== null && old.writableLength > 0) this.readBufferRetained = true;
    const peer = this.peer;
    this.spans.begin(peer === null ? null : peer.socket, this.native);
    return peer;
  }

  /**
   * A ParameterDescription, RowDescription or NoData answering the proxy's Describe at the head of `expect`
   * (`head`, RecordDescribe or CheckDescribe). Returns the ShapeCheck to tell the peer, or -1.
   */
  private described(head: number, type: number): number {
    const f = this.framer;
    if (type === m.BackendType.ParameterDescription) {
      this.describedParams = f.buffer.toString('latin1', f.start, f.end);
      return -1;
    }
    const shape = { params: this.describedParams, result: type === m.BackendType.NoData ? NO_DATA : resultShapeKey(f.buffer, f.bodyStart, f.end) };
    this.describedParams = '';
    this.expect.shift();
    const statement = this.describeFor.shift()!;
    if (head === Expect.RecordDescribe) {
      statement.shape = shape;
      return -1;
    }
    this.checking = false;
    const known = statement.shape;
    return known !== null && known.params === shape.params && known.result === shape.result ? ShapeCheck.Same : ShapeCheck.Changed;
  }

  /**
   * True for a FATAL error: it is kept (serverError) for the client, told when the connection closes, instead of
   * being forwarded now (in transaction mode the client stays and gets it as an ERROR).
   */
  private noteError(): boolean {
    const f = this.framer;
    const fields = m.decodeErrorFields(f.buffer, f.bodyStart, f.end);
    // V (never localized) when the server sends it (9.6+); S may be translated by lc_messages.
    const severity = fields.severityNonLocalized ?? fields.severity;
    if (severity === 'FATAL' || severity === 'PANIC') {
      this.fatal = `server connection lost: ${fields.message}`;
      this.serverError = fields;
      // PostgreSQL closes after a FATAL: the loss is handled now (close is emitted on the next tick), before a
      // client's next statement could be written to the dying backend and count as in flight there.
      this.destroy();
      return true;
    }
    return false;
  }
}

function noCredentials(user: string, method: string): PgProtocolError {
  return new PgProtocolError(SQLSTATE.INVALID_PASSWORD, `the proxy holds no ${method} credentials for user "${user}"`, {
    hint: 'Put the password (or, for SCRAM, the same SCRAM secret the server stores, and log in with SCRAM first) in auth_file.',
  });
}
