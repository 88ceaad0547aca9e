/**
 * The proxy's protocol and auth pieces against real peers: our SCRAM client logs in to a real PostgreSQL 15 (and
 * is refused with the right SQLSTATE for a wrong password); node-postgres, an independent client, logs in to our
 * SCRAM server side checking PostgreSQL's own stored verifier, after which we log in to PostgreSQL with the keys
 * recovered from that exchange (pass-through) and relay frames both ways; node-postgres also passes our md5
 * server side. One PostgreSQL server is shared by the whole file.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { md5Salt, md5Secret, verifyMd5Response } from '../../src/proxy/auth/md5.js';
import { SCRAM_SHA_256, type ScramKeys } from '../../src/protocol/scram.js';
import { ScramClientSession, ScramServerSession } from '../../src/proxy/auth/scram.js';
import { PgProtocolError } from '../../src/proxy/protocol/errors.js';
import { type Frame, MessageFramer } from '../../src/proxy/protocol/framer.js';
import * as m from '../../src/proxy/protocol/messages.js';
import { MessageWriter } from '../../src/proxy/protocol/writer.js';
import type { PostgresServer } from '../../src/postgres/server.js';
import { cleanupServers, makePgTempDir, makeTestServer, testCredentials } from '../helpers/pg.js';

/** Test-only async reader of frames from a socket (the proxy itself will not await per message). */
class Wire {
  private readonly framer: MessageFramer;
  private readonly frames: Frame[] = [];
  private waiter: (() => void) | null = null;
  private closed: Error | null = null;

  constructor(readonly socket: Socket, startup = false) {
    this.framer = new MessageFramer({ startup });
    socket.on('data', (chunk: Buffer) => {
      this.framer.push(chunk);
      try {
        while (this.framer.next()) this.frames.push(this.framer.snapshot());
      } catch (e) {
        this.closed = e as Error;
      }
      this.wake();
    });
    socket.on('close', () => {
      this.closed ??= new Error('connection closed');
      this.wake();
    });
    socket.on('error', (e) => {
      this.closed ??= e;
      this.wake();
    });
  }

  async next(timeoutMs = 10_000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const frame = this.frames.shift();
      if (frame !== undefined) return frame;
      if (this.closed !== null) throw this.closed;
      if (Date.now() > deadline) throw new Error('no frame within the time limit');
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        setTimeout(resolve, 200).unref();
      });
    }
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }
}

async function openWire(port: number): Promise<Wire> {
  const socket = connect({ host: '127.0.0.1', port });
  await once(socket, 'connect');
  return new Wire(socket);
}

interface Session {
  wire: Wire;
  params: Map<string, string>;
  backendKey: { pid: number; secretKey: number } | null;
  keys: ScramKeys | null;
}

/** Logs in to PostgreSQL the way the proxy will: StartupMessage, SCRAM with a password or keys, up to ReadyForQuery. */
async function logIn(port: number, user: string, auth: { password?: string; keys?: ScramKeys }): Promise<Session> {
  const wire = await openWire(port);
  const w = new MessageWriter();
  wire.write(m.writeStartupMessage(w, { user, database: 'postgres', application_name: 'pgwarden-test' }).flush());
  const scram = new ScramClientSession(auth);
  const params = new Map<string, string>();
  let backendKey: Session['backendKey'] = null;
  for (;;) {
    const f = await wire.next();
    if (f.type === m.BackendType.Authentication) {
      const request = m.decodeAuthentication(f.buffer, f.bodyStart, f.end);
      if (request.kind === 'sasl') {
        assert.ok(request.mechanisms.includes(SCRAM_SHA_256));
        wire.write(m.writeSASLInitialResponse(w, SCRAM_SHA_256, scram.initialResponse()).flush());
      } else if (request.kind === 'sasl-continue') {
        wire.write(m.writeSASLResponse(w, scram.handleContinue(request.data)).flush());
      } else if (request.kind === 'sasl-final') {
        scram.handleFinal(request.data);
      } else if (request.kind === 'ok') {
        assert.equal(scram.succeeded, true, 'AuthenticationOk only after the server proved itself');
      } else {
        assert.fail(`unexpected authentication request ${request.kind}`);
      }
    } else if (f.type === m.BackendType.ErrorResponse) {
      wire.socket.destroy();
      const fields = m.decodeErrorFields(f.buffer, f.bodyStart, f.end);
      throw new PgProtocolError(fields.code, fields.message);
    } else if (f.type === m.BackendType.ParameterStatus) {
      const { name, value } = m.decodeParameterStatus(f.buffer, f.bodyStart, f.end);
      params.set(name, value);
    } else if (f.type === m.BackendType.BackendKeyData) {
      backendKey = m.decodeBackendKeyData(f.buffer, f.bodyStart, f.end);
    } else if (f.type === m.BackendType.ReadyForQuery) {
      assert.equal(m.decodeReadyForQuery(f.buffer, f.bodyStart, f.end), 'I');
      return { wire, params, backendKey, keys: scram.keys };
    }
  }
}

/** Runs one simple query on a logged-in session and returns its text rows. */
async function simpleQuery(wire: Wire, sql: string): Promise<{ rows: (string | null)[][]; tag: string }> {
  wire.write(m.writeQuery(new MessageWriter(), sql).flush());
  const rows: (string | null)[][] = [];
  let tag = '';
  for (;;) {
    const f = await wire.next();
    if (f.type === m.BackendType.DataRow) rows.push(m.decodeDataRow(f.buffer, f.bodyStart, f.end));
    else if (f.type === m.BackendType.CommandComplete) tag = m.decodeCommandComplete(f.buffer, f.bodyStart, f.end);
    else if (f.type === m.BackendType.ErrorResponse) throw new Error(m.decodeErrorFields(f.buffer, f.bodyStart, f.end).message);
    else if (f.type === m.BackendType.ReadyForQuery) return { rows, tag };
  }
}

function whole(f: Frame): Buffer {
  return f.buffer.subarray(f.start, f.end);
}

describe('proxy auth against PostgreSQL 15 and node-postgres', { timeout: 120_000 }, () => {
  const credentials = testCredentials();
  const superuser = credentials.superuser;
  let postgres: PostgresServer;
  let storedVerifier: string;
  const servers: Server[] = [];
  const sockets = new Set<Socket>();

  /** A listening test server on a free loopback port that runs `handle` per connection. */
  async function serve(handle: (client: Wire) => Promise<void>): Promise<number> {
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      handle(new Wire(socket, true)).catch((e: unknown) => {
        if (e instanceof PgProtocolError) socket.end(m.errorResponse(e.toFields()));
        else socket.destroy();
      });
    });
    servers.push(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return (server.address() as AddressInfo).port;
  }

  before(async () => {
    const base = await makePgTempDir('pgwarden-proxy-scram-');
    postgres = await makeTestServer('scram', base, credentials);
    await postgres.bootstrap();
  });

  after(async () => {
    for (const socket of sockets) socket.destroy();
    for (const server of servers) server.close();
    await cleanupServers();
  });

  it('our SCRAM client logs in to PostgreSQL with the password and runs a query', async () => {
    const session = await logIn(postgres.port, superuser.username, { password: superuser.password });
    assert.equal(session.params.get('server_version')?.split('.')[0], '15');
    assert.equal(session.params.get('application_name'), 'pgwarden-test');
    assert.ok(session.backendKey !== null && session.backendKey.pid > 0);
    const { rows, tag } = await simpleQuery(session.wire, `SELECT rolpassword FROM pg_authid WHERE rolname = '${superuser.username}'`);
    assert.equal(tag, 'SELECT 1');
    storedVerifier = rows[0][0] ?? '';
    assert.match(storedVerifier, /^SCRAM-SHA-256\$4096:/);
    session.wire.write(m.writeTerminate(new MessageWriter()).flush());
    await once(session.wire.socket, 'close');
  });

  it('a wrong password is refused by PostgreSQL with 28P01', async () => {
    await assert.rejects(logIn(postgres.port, superuser.username, { password: 'not the password' }), (e: unknown) => {
      assert.ok(e instanceof PgProtocolError);
      assert.equal(e.sqlstate, '28P01');
      assert.equal(e.message, `password authentication failed for user "${superuser.username}"`);
      return true;
    });
  });

  it('node-postgres logs in to our SCRAM server side; we log in to PostgreSQL with the recovered keys and relay', async () => {
    assert.ok(storedVerifier, 'the first test fetched the verifier');
    const port = await serve(async (client) => {
      const w = new MessageWriter();
      const first = await client.next();
      const startup = m.decodeStartupFrame(first.buffer, first.bodyStart, first.end);
      assert.ok(startup.kind === 'startup');
      // The proxy knows only what PostgreSQL stores, never the password.
      const scram = new ScramServerSession({ user: startup.user, secret: startup.user === superuser.username ? storedVerifier : null });
      client.write(m.writeAuthenticationSASL(w, scram.mechanisms).flush());
      const initial = await client.next();
      assert.equal(initial.type, m.FrontendType.Password);
      const { mechanism, data } = m.decodeSASLInitialResponse(initial.buffer, initial.bodyStart, initial.end);
      client.write(m.writeAuthenticationSASLContinue(w, scram.handleInitialResponse(mechanism, data)).flush());
      const response = await client.next();
      const serverFinal = scram.handleResponse(m.decodeSASLResponse(response.buffer, response.bodyStart, response.end));
      const keys = scram.passThroughKeys();
      assert.ok(keys !== null);
      const upstream = await logIn(postgres.port, startup.user, { keys });
      m.writeAuthenticationSASLFinal(w, serverFinal);
      m.writeAuthenticationOk(w);
      for (const [name, value] of upstream.params) m.writeParameterStatus(w, name, value);
      m.writeBackendKeyData(w, 1, 2);
      m.writeReadyForQuery(w, 'I');
      client.write(w.flush());
      // Relay whole frames both ways until the client says goodbye.
      void (async () => {
        for (;;) client.write(whole(await upstream.wire.next()));
      })().catch(() => client.socket.destroy());
      for (;;) {
        const f = await client.next();
        upstream.wire.write(whole(f));
        if (f.type === m.FrontendType.Terminate) break;
      }
      client.socket.end();
    });

    const good = new pg.Client({ host: '127.0.0.1', port, user: superuser.username, password: superuser.password, database: 'postgres' });
    await good.connect();
    const result = await good.query("SELECT current_user AS who, 41 + 1 AS answer, repeat('x', 100000) AS big");
    assert.equal(result.rows[0].who, superuser.username);
    assert.equal(result.rows[0].answer, 42);
    assert.equal(result.rows[0].big.length, 100_000);
    const prepared = await good.query({ name: 'add', text: 'SELECT $1::int + $2::int AS sum', values: [20, 22] });
    assert.equal(prepared.rows[0].sum, 42);
    await good.end();

    const wrong = new pg.Client({ host: '127.0.0.1', port, user: superuser.username, password: 'wrong', database: 'postgres' });
    wrong.on('error', () => undefined);
    await assert.rejects(wrong.connect(), (e: unknown) => {
      const error = e as { code?: string; message?: string };
      assert.equal(error.code, '28P01');
      assert.equal(error.message, `password authentication failed for user "${superuser.username}"`);
      return true;
    });

    const unknown = new pg.Client({ host: '127.0.0.1', port, user: 'nobody', password: 'x', database: 'postgres' });
    unknown.on('error', () => undefined);
    await assert.rejects(unknown.connect(), (e: unknown) => (e as { code?: string }).code === '28P01');
  });

  it('node-postgres passes our md5 server side, and fails it with a wrong password', async () => {
    const stored = md5Secret('md5 secret', 'legacy');
    const port = await serve(async (client) => {
      const w = new MessageWriter();
      const first = await client.next();
      const startup = m.decodeStartupFrame(first.buffer, first.bodyStart, first.end);
      assert.ok(startup.kind === 'startup');
      const salt = md5Salt();
      client.write(m.writeAuthenticationMD5Password(w, salt).flush());
      const answer = await client.next();
      verifyMd5Response({ user: startup.user, secret: stored, salt, response: m.decodePasswordMessage(answer.buffer, answer.bodyStart, answer.end) });
      m.writeAuthenticationOk(w);
      m.writeBackendKeyData(w, 1, 2);
      m.writeReadyForQuery(w, 'I');
      client.write(w.flush());
      const bye = await client.next();
      assert.equal(bye.type, m.FrontendType.Terminate);
      client.socket.end();
    });
    const good = new pg.Client({ host: '127.0.0.1', port, user: 'legacy', password: 'md5 secret', database: 'x' });
    await good.connect();
    await good.end();
    const bad = new pg.Client({ host: '127.0.0.1', port, user: 'legacy', password: 'nope', database: 'x' });
    bad.on('error', () => undefined);
    await assert.rejects(bad.connect(), (e: unknown) => (e as { code?: string }).code === '28P01');
  });
});
