/**
 * One client connection: startup and authentication, then forwarding of whole frames to the server connection
 * it holds (for a transaction in transaction mode, for its lifetime in session mode).
 *
 * Forwarding follows DESIGN.md's hot path: consecutive frames are written as one slice of the received chunk
 * inside cork/uncork; the client frames looked at are Parse/Bind/Describe/Close (prepared statements), Sync,
 * Query, FunctionCall (answers owed) and Terminate. When no server connection is free the client's socket is
 * paused and its unread frames stay in the framer: the wait costs no copies and no growing queue.
 */
import { randomInt } from 'node:crypto';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { md5Salt, verifyMd5Response } from './auth/md5.js';
import { ScramServerSession } from './auth/scram.js';
import { PgProtocolError, SQLSTATE, isPgProtocolError } from './protocol/errors.js';
import { MessageFramer, frontendAuthLimits, frontendLimits } from './protocol/framer.js';
import * as m from './protocol/messages.js';
import { MessageWriter } from './protocol/writer.js';
import { applySettingsSql, clientSettings, settingsKey } from './pool/session-params.js';
import { Expect, HIGH_WATER_MARK, type ServerConn, type ServerConnPeer } from './pool/server-conn.js';
import type { PoolWaiter, ServerPool } from './pool/server-pool.js';
import { type AdminConsole, consoleFor } from './admin/console.js';
import { type ClientTls, clientCertificateProblem } from './tls.js';

/** What a client needs from the proxy server that accepted it. */
export interface ClientHost {
  readonly poolMode: 'session' | 'transaction';
  readonly authType: 'scram-sha-256' | 'md5' | 'trust';
  readonly maxMessageLength: number;
  readonly serverResetQuery: string;
  /** TLS for clients (client_tls_*); absent or null: SSLRequest is answered N. */
  readonly clientTls?: ClientTls | null;
  /** The userlist entry for `user`, or null. */
  secretFor(user: string): string | null;
  /** The pool for (database as the client named it, user); throws PgProtocolError 3D000 for an unknown database. */
  poolFor(database: string, user: string): ServerPool;
  register(client: ProxyClient): void;
  unregister(client: ProxyClient): void;
  cancel(pid: number, secretKey: number): void;
}

type State = 'startup' | 'sasl-initial' | 'sasl-response' | 'md5' | 'connecting' | 'ready' | 'closed';

/** Values a server reports that follow the client's own startup settings. */
const REPORTED_FROM_CLIENT = new Set(['application_name', 'client_encoding', 'DateStyle', 'TimeZone', 'IntervalStyle', 'standard_conforming_strings', 'is_superuser']);

export class ProxyClient implements ServerConnPeer, PoolWaiter {
  /** The fake BackendKeyData this client got, for CancelRequest matching. */
  readonly pid = randomInt(1, 0x7fffffff);
  readonly secretKey = randomInt(0, 0x7fffffff);
  user = '';
  database = '';
  server: ServerConn | null = null;
  state: State = 'startup';
  /** The client talks TLS: `socket` is then the TLSSocket over the accepted TCP socket. */
  encrypted = false;

  private readonly framer: MessageFramer;
  private readonly writer = new MessageWriter(1024);
  private pool: ServerPool | null = null;
  private scram: ScramServerSession | null = null;
  private salt: Buffer | null = null;
  private settings = new Map<string, string>();
  private settingsSql = 'RESET ALL';
  private settingsId = '[]';
  /** The current frame was read from the framer but not handled yet (waiting for a server connection). */
  private held = false;
  private waiting = false;
  /** Extended-protocol messages were sent since the last Sync: the server may not be given back yet. */
  private midBatch = false;
  /** Named prepared statements of this client: name → its Parse message (a private copy). */
  private readonly statements = new Map<string, Buffer>();
  /** The proxy's admin console (PAUSE gate), and whether this client logged in to it rather than to a pool. */
  private console: AdminConsole | null = null;
  private toConsole = false;
  private readonly onDrain = (): void => {
    this.server?.socket.resume();
  };
  private readonly onServerDrain = (): void => {
    if (!this.waiting) this.socket.resume();
  };

  private readonly onData = (chunk: Buffer): void => {
    this.framer.push(chunk);
    this.pump();
  };

  constructor(
    public socket: Socket,
    private readonly host: ClientHost,
  ) {
    this.framer = new MessageFramer({ startup: true });
    socket.setNoDelay(true);
    this.listen(socket);
  }

  private listen(socket: Socket): void {
    socket.on('data', this.onData);
    socket.on('drain', this.onDrain);
    socket.on('error', () => undefined);
    socket.on('close', () => this.handleClose());
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
    const raw = this.socket;
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
      if (this.state === 'ready') this.forward();
      else this.handshake();
    } catch (e) {
      this.fail(e);
    }
  }

  private handshake(): void {
    const f = this.framer;
    while (this.state !== 'connecting' && this.state !== 'ready' && this.state !== 'closed' && f.next()) {
      if (this.state === 'startup') this.handleStartup();
      else this.handleAuthMessage();
    }
  }

  private handleStartup(): void {
    const f = this.framer;
    const frame = m.decodeStartupFrame(f.buffer, f.bodyStart, f.end);
    if (frame.kind === 'ssl') {
      const tls = this.host.clientTls ?? null;
      if (tls === null) this.socket.write(m.SSL_REFUSED);
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
    if (!this.encrypted && tls?.sslmode === 'require') {
      // PostgreSQL's wording for a hostssl-only pg_hba, which clients and people recognise.
      throw new PgProtocolError(
        SQLSTATE.INVALID_AUTHORIZATION_SPECIFICATION,
        `no pg_hba.conf entry for host "${this.socket.remoteAddress ?? 'unknown'}", user "${frame.user}", database "${frame.database}", no encryption`,
        { hint: 'This proxy accepts only TLS connections (client_tls_sslmode require): connect with sslmode=require or stronger.' },
      );
    }
    try {
      this.settings = clientSettings(frame.params);
    } catch (e) {
      throw new PgProtocolError('22023', (e as Error).message);
    }
    this.settingsSql = applySettingsSql(this.settings);
    this.settingsId = settingsKey(this.settings);
    this.console = consoleFor(this.host);
    this.toConsole = this.console !== null && this.console.serves(this.database);
    this.pool = this.toConsole ? null : this.host.poolFor(this.database, this.user);
    if (frame.minorVersion > 0 || frame.protocolOptions.length > 0) m.writeNegotiateProtocolVersion(this.writer, 0, frame.protocolOptions);
    this.framer.setLimits(frontendAuthLimits());
    const secret = this.host.secretFor(this.user);
    const authType = this.host.authType;
    if (authType === 'trust') {
      this.finishAuth(null);
    } else if (authType === 'md5' && (secret === null || !secret.startsWith('SCRAM-SHA-256$'))) {
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
      verifyMd5Response({ user: this.user, secret: this.host.secretFor(this.user), salt: this.salt!, response });
      this.finishAuth(null);
    } else if (this.state === 'sasl-initial') {
      const { mechanism, data } = m.decodeSASLInitialResponse(f.buffer, f.bodyStart, f.end);
      this.socket.write(m.writeAuthenticationSASLContinue(this.writer, this.scram!.handleInitialResponse(mechanism, data)).flush());
      this.state = 'sasl-response';
    } else if (this.state === 'sasl-response') {
      const final = this.scram!.handleResponse(m.decodeSASLResponse(f.buffer, f.bodyStart, f.end));
      const keys = this.scram!.passThroughKeys();
      if (keys !== null) this.pool?.rememberScramKeys(keys);
      this.finishAuth(final);
    }
  }

  /** Authenticated: learn the server's parameters (first client of a pool opens a connection), then say hello. */
  private finishAuth(saslFinal: Buffer | null): void {
    if (this.toConsole) {
      // Handed over: the console session owns the socket from here; 'closed' keeps this object out of the way.
      this.state = 'closed';
      this.console!.openSession(this.socket, this.user, saslFinal, this.pid, this.secretKey);
      return;
    }
    this.state = 'connecting';
    this.pool!.parameters().then(
      (params) => {
        if (this.state !== 'connecting') return;
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
        this.pump();
      },
      (e: unknown) => this.fail(e),
    );
  }

  /** The hot loop: frames from the client to its server connection. */
  private forward(): void {
    const f = this.framer;
    let server = this.server;
    let out: Socket | null = server === null ? null : server.socket;
    out?.cork();
    let spanBuffer: Buffer | null = null;
    let spanStart = 0;
    let spanEnd = 0;
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
          server = this.console?.paused === true ? null : this.pool!.tryAcquire();
          if (server === null) {
            if (!this.waiting) {
              this.waiting = true;
              this.socket.pause();
              if (this.console?.paused === true) this.console.hold(this, this.pool!);
              else this.pool!.wait(this);
            }
            return;
          }
          this.attach(server);
          out = server.socket;
          out.cork();
        }
        this.held = false;
        if (t === m.FrontendType.Terminate) {
          if (spanBuffer !== null) out!.write(spanBuffer.subarray(spanStart, spanEnd));
          spanBuffer = null;
          out!.uncork();
          out = null;
          this.close();
          return;
        }
        let inject = false;
        if (t === m.FrontendType.Sync || t === m.FrontendType.Query || t === m.FrontendType.FunctionCall) {
          server.pushExpect(Expect.Sync);
          this.midBatch = false;
        } else if (t === m.FrontendType.Parse) {
          this.midBatch = true;
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
          if (f.buffer[f.bodyStart] === 0x53 && f.buffer[f.bodyStart + 1] !== 0) inject = this.needsPrepare(server, f.bodyStart + 1);
        } else if (t === m.FrontendType.Close) {
          this.midBatch = true;
          if (f.buffer[f.bodyStart] === 0x53 && f.buffer[f.bodyStart + 1] !== 0) {
            const name = m.decodeClose(f.buffer, f.bodyStart, f.end).name;
            this.statements.delete(name);
            server.prepared.delete(name);
          }
          server.pushExpect(Expect.ClientClose);
        } else if (t !== m.FrontendType.CopyData && t !== m.FrontendType.CopyDone && t !== m.FrontendType.CopyFail) {
          this.midBatch = true;
        }
        if (inject) {
          if (spanBuffer !== null) out!.write(spanBuffer.subarray(spanStart, spanEnd));
          spanBuffer = null;
          this.prepareOn(server, t);
          continue;
        }
        if (spanBuffer === f.buffer && spanEnd === f.start) {
          spanEnd = f.end;
        } else {
          if (spanBuffer !== null) out!.write(spanBuffer.subarray(spanStart, spanEnd));
          spanBuffer = f.buffer;
          spanStart = f.start;
          spanEnd = f.end;
        }
      }
    } finally {
      if (out !== null) {
        if (spanBuffer !== null) out.write(spanBuffer.subarray(spanStart, spanEnd));
        out.uncork();
        if (out.writableLength > HIGH_WATER_MARK) this.socket.pause();
      }
    }
  }

  /** True when the statement named at `nameAt` (a Bind's or Describe's) must first be prepared on `server`. */
  private needsPrepare(server: ServerConn, nameAt: number): boolean {
    const f = this.framer;
    const nul = f.buffer.indexOf(0, nameAt);
    const name = f.buffer.toString('latin1', nameAt, nul < 0 ? f.end : nul);
    const mine = this.statements.get(name);
    if (mine === undefined) return false; // unknown to us: let the server answer as it would
    const theirs = server.prepared.get(name);
    return theirs === undefined || !theirs.equals(mine);
  }

  /**
   * A named Parse from the client, or a Bind/Describe of a statement this server connection lacks: writes what
   * the server must have first (Close of a stale statement, the client's Parse), whose answers are swallowed,
   * then the client's message itself.
   */
  private prepareOn(server: ServerConn, type: number): void {
    const f = this.framer;
    const out = server.socket;
    const w = server.messageWriter;
    if (type === m.FrontendType.Parse) {
      const name = f.buffer.toString('latin1', f.bodyStart, f.buffer.indexOf(0, f.bodyStart));
      const copy = Buffer.from(f.buffer.subarray(f.start, f.end));
      this.statements.set(name, copy);
      if (server.prepared.has(name)) {
        out.write(m.writeClose(w, 'S', name).flush());
        server.pushExpect(Expect.InjectedClose);
      }
      server.prepared.set(name, copy);
      server.pushExpect(Expect.ClientParse);
      out.write(copy);
      return;
    }
    const nameAt = type === m.FrontendType.Bind ? f.buffer.indexOf(0, f.bodyStart) + 1 : f.bodyStart + 1;
    const name = f.buffer.toString('latin1', nameAt, f.buffer.indexOf(0, nameAt));
    const mine = this.statements.get(name)!;
    if (server.prepared.has(name)) {
      out.write(m.writeClose(w, 'S', name).flush());
      server.pushExpect(Expect.InjectedClose);
    }
    out.write(mine);
    server.pushExpect(Expect.InjectedParse);
    server.prepared.set(name, mine);
    out.write(f.buffer.subarray(f.start, f.end));
  }

  // ------------------------------------------------------------------------------------------------------------
  // Server connection lifecycle
  // ------------------------------------------------------------------------------------------------------------

  private attach(server: ServerConn): void {
    this.server = server;
    server.attach(this);
    server.socket.on('drain', this.onServerDrain);
    if (server.settingsKey !== this.settingsId) {
      server.injectQuery(this.settingsSql);
      server.settingsKey = this.settingsId;
    }
    server.socket.resume();
  }

  onServerAcquired(conn: ServerConn): void {
    this.waiting = false;
    if (this.state !== 'ready') {
      this.pool?.release(conn);
      return;
    }
    this.attach(conn);
    this.socket.resume();
    this.pump();
  }

  onAcquireFailed(error: PgProtocolError): void {
    this.waiting = false;
    if (this.state !== 'ready') return;
    this.fail(error);
  }

  onServerReady(conn: ServerConn, status: number): void {
    if (this.host.poolMode === 'transaction' && status === 0x49 && conn.outstanding === 0 && !this.midBatch && !this.held) {
      this.releaseServer();
    }
  }

  onServerLost(conn: ServerConn, message: string): void {
    if (this.server !== conn) return;
    const outstanding = conn.outstanding;
    this.detachServer();
    this.pool?.discard(conn);
    if (this.state !== 'ready') return;
    if (outstanding > 0 && this.host.poolMode === 'transaction') {
      // The client waits for answers: it gets an error for the lost transaction and may go on with a new one.
      const w = this.writer;
      m.writeErrorResponse(w, { severity: 'ERROR', code: SQLSTATE.CONNECTION_FAILURE, message });
      for (let i = 0; i < outstanding; i++) m.writeReadyForQuery(w, 'I');
      this.midBatch = false;
      this.socket.write(w.flush());
      return;
    }
    this.fail(new PgProtocolError(SQLSTATE.CONNECTION_FAILURE, message));
  }

  private detachServer(): void {
    const server = this.server;
    if (server === null) return;
    server.socket.off('drain', this.onServerDrain);
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

  /** Sends the error (FATAL for protocol errors) and closes this client only. */
  fail(e: unknown): void {
    if (this.state === 'closed') return;
    const error = isPgProtocolError(e) ? e : new PgProtocolError('XX000', `internal proxy error: ${(e as Error).message}`);
    if (this.socket.writable) this.socket.end(m.errorResponse({ ...error.toFields(), severity: 'FATAL' }));
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
      this.detachServer();
      if (server.outstanding === 0 && server.status === 0x49 && !this.midBatch) {
        if (this.host.poolMode === 'session' && this.host.serverResetQuery !== '') {
          server.injectQuery(this.host.serverResetQuery);
          server.prepared.clear();
          server.settingsKey = '';
        }
        this.pool!.release(server);
      } else {
        this.pool!.discard(server);
      }
    }
    if (!this.socket.destroyed) this.socket.end();
  }

  private handleClose(): void {
    this.close();
  }
}
