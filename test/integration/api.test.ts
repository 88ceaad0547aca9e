/**
 * The REST API's HTTP layer on a real fastify server and real sockets. The backend is a small hand-written object
 * holding a fixed status and view (the backend is not under test here; routing, codes, auth and bodies are).
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { ApiBackend } from '../../src/ha/api-backend.js';
import { startApi, type ApiServer } from '../../src/api/server.js';
import { PgwardenError } from '../../src/errors.js';
import type { ClusterView, FailoverIntent, MemberStatus } from '../../src/cluster/types.js';
import type { DynamicConfig } from '../../src/cluster/dynamic-config.js';
import { NOW, member, viewOf } from '../unit/api-fixtures.js';

const AUTH = { username: 'admin', password: 's3cret:with:colons' };
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const GOOD = basic(AUTH.username, AUTH.password);

class FixedBackend implements ApiBackend {
  readonly cluster = 'main';
  failovers: FailoverIntent[] = [];
  configs: DynamicConfig[] = [];
  restarts = 0;
  reloads = 0;
  reinitializations = 0;
  running = true;

  constructor(
    readonly memberName: string,
    public currentView: ClusterView | null,
  ) {}

  status(): MemberStatus | null {
    return this.currentView?.members[this.memberName] ?? null;
  }
  view(): ClusterView | null {
    return this.currentView;
  }
  pgRunning(): boolean {
    return this.running;
  }
  async requestFailover(intent: FailoverIntent): Promise<void> {
    this.failovers.push(intent);
  }
  async setDynamicConfig(config: DynamicConfig): Promise<void> {
    this.configs.push(config);
  }
  requestRestart(): void {
    this.restarts++;
  }
  requestReload(): void {
    this.reloads++;
  }
  requestReinitialize(): void {
    this.reinitializations++;
  }
  async metrics(): Promise<string> {
    return '# HELP pgwarden_up 1 when up\n# TYPE pgwarden_up gauge\npgwarden_up 1\n';
  }
  readonly metricsContentType = 'text/plain; version=0.0.4; charset=utf-8';
}

function clusterView(): ClusterView {
  return viewOf([member('a', 'primary'), member('b', 'replica'), member('c', 'replica')], {
    history: [{ timeline: 2, lsn: 4096, at: NOW - 60_000, reason: 'switchover to a', leader: 'a' }],
  });
}

let primaryBackend: FixedBackend;
let replicaBackend: FixedBackend;
let emptyBackend: FixedBackend;
let primary: ApiServer;
let replica: ApiServer;
let empty: ApiServer;

before(async () => {
  primaryBackend = new FixedBackend('a', clusterView());
  replicaBackend = new FixedBackend('b', clusterView());
  emptyBackend = new FixedBackend('a', null);
  const now = () => NOW;
  primary = await startApi({ listen: '127.0.0.1:0', backend: primaryBackend, auth: AUTH, now });
  replica = await startApi({ listen: '127.0.0.1:0', backend: replicaBackend, auth: AUTH, now });
  empty = await startApi({ listen: '127.0.0.1:0', backend: emptyBackend, auth: AUTH, now: () => Date.now() });
});

after(async () => {
  await Promise.all([primary?.close(), replica?.close(), empty?.close()]);
});

function request(server: ApiServer, path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${server.url}${path}`, init);
}

function send(server: ApiServer, method: string, path: string, body?: unknown, authorization: string | null = GOOD) {
  const headers: Record<string, string> = {};
  if (authorization !== null) headers.authorization = authorization;
  if (body !== undefined) headers['content-type'] = 'application/json';
  return request(server, path, { method, headers, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
}

describe('health endpoints: GET, HEAD and OPTIONS give the same code', () => {
  const expectations: Array<[string, number, number]> = [
    // path, primary, replica
    ['/', 200, 503],
    ['/primary', 200, 503],
    ['/master', 200, 503],
    ['/read-write', 200, 503],
    ['/leader', 200, 503],
    ['/standby-leader', 503, 503],
    ['/replica', 503, 200],
    ['/replica?lag=1MB', 503, 200],
    ['/replica?tag_nofailover=false', 503, 200],
    ['/replica?tag_nofailover=true', 503, 503],
    ['/read-only', 200, 200],
    ['/synchronous', 503, 503],
    ['/sync', 503, 503],
    ['/asynchronous', 503, 200],
    ['/async', 503, 200],
    ['/health', 200, 200],
    ['/liveness', 200, 200],
    ['/readiness', 200, 200],
    ['/primary/', 200, 503],
  ];
  for (const [path, onPrimary, onReplica] of expectations) {
    it(`${path}: primary ${onPrimary}, replica ${onReplica}`, async () => {
      for (const method of ['GET', 'HEAD', 'OPTIONS']) {
        const [p, r] = await Promise.all([request(primary, path, { method }), request(replica, path, { method })]);
        assert.equal(p.status, onPrimary, `${method} ${path} on the primary`);
        assert.equal(r.status, onReplica, `${method} ${path} on the replica`);
        assert.ok(p.headers.get('x-pgwarden-check'), 'a reason header');
        await Promise.all([p.arrayBuffer(), r.arrayBuffer()]);
      }
    });
  }

  it('GET carries the member status; HEAD and OPTIONS carry no body', async () => {
    const get = await request(primary, '/primary');
    const body = (await get.json()) as Record<string, any>;
    assert.equal(body.state, 'running');
    assert.equal(body.role, 'primary');
    assert.equal(body.name, 'a');
    assert.equal(body.timeline, 3);
    assert.deepEqual(body.patroni, { version: '0.1.0', scope: 'main', name: 'a' });
    assert.equal(typeof body.xlog.location, 'number');
    const replicaBody = (await (await request(replica, '/primary')).json()) as Record<string, any>;
    assert.equal(replicaBody.role, 'replica', 'a 503 still carries the status');
    assert.equal(replicaBody.replication_state, 'streaming');
    for (const method of ['HEAD', 'OPTIONS']) {
      const res = await request(primary, '/primary', { method });
      assert.equal(await res.text(), '', method);
    }
  });

  it('HAProxy\'s "OPTIONS /primary HTTP/1.0" sees 200 on the primary only', async () => {
    const statusLine = (server: ApiServer) =>
      new Promise<string>((resolve, reject) => {
        const { hostname, port } = new URL(server.url);
        const socket = connect(Number(port), hostname, () => socket.write('OPTIONS /primary HTTP/1.0\r\n\r\n'));
        let data = '';
        socket.on('data', (chunk) => (data += chunk.toString('latin1')));
        socket.on('end', () => resolve(data.split('\r\n')[0]));
        socket.on('error', reject);
      });
    assert.equal(await statusLine(primary), 'HTTP/1.1 200 OK');
    assert.equal(await statusLine(replica), 'HTTP/1.1 503 Service Unavailable');
  });

  it('before the first cycle: nothing is healthy but liveness', async () => {
    for (const path of ['/primary', '/leader', '/replica', '/read-only', '/readiness', '/sync']) {
      assert.equal((await request(empty, path, { method: 'OPTIONS' })).status, 503, path);
    }
    assert.equal((await request(empty, '/liveness')).status, 200);
    const body = (await (await request(empty, '/primary')).json()) as Record<string, any>;
    assert.equal(body.state, 'unknown');
  });
});

describe('read-only JSON endpoints', () => {
  it('GET /patroni', async () => {
    const res = await request(replica, '/patroni');
    assert.equal(res.status, 200);
    const body = (await res.json()) as Record<string, any>;
    assert.equal(body.name, 'b');
    assert.equal(body.member.name, 'b', 'the published member key, for peers');
    assert.equal(body.member.walPosition, 50 * 1024 * 1024);
    assert.equal((await request(empty, '/patroni')).status, 503);
  });

  it('GET /cluster', async () => {
    const body = (await (await request(primary, '/cluster')).json()) as Record<string, any>;
    assert.equal(body.scope, 'main');
    assert.equal(body.pause, false);
    assert.deepEqual(body.members.map((m: any) => [m.name, m.role, m.member_role, m.state]), [
      ['a', 'leader', 'primary', 'running'],
      ['b', 'replica', 'replica', 'streaming'],
      ['c', 'replica', 'replica', 'streaming'],
    ]);
    assert.equal(body.members[1].lag, 0);
    assert.equal(body.members[1].host, '127.0.0.1');
    assert.equal(body.members[1].port, 5433);
    assert.equal(body.members[1].api_url, 'http://127.0.0.1:8009/patroni');
    const res = await request(empty, '/cluster');
    assert.equal(res.status, 503);
    assert.match(await res.text(), /not read the cluster from etcd yet/);
  });

  it('GET /history', async () => {
    const body = await (await request(primary, '/history')).json();
    assert.deepEqual(body, [[2, 4096, 'switchover to a', new Date(NOW - 60_000).toISOString(), 'a']]);
  });

  it('GET /config', async () => {
    const body = (await (await request(primary, '/config')).json()) as DynamicConfig;
    assert.deepEqual(body, primaryBackend.currentView!.config);
  });

  it('GET /metrics', async () => {
    const res = await request(primary, '/metrics');
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    assert.match(await res.text(), /^pgwarden_up 1$/m);
  });

  it('unknown paths are 404', async () => {
    const res = await request(primary, '/nope');
    assert.equal(res.status, 404);
    assert.match(await res.text(), /no such endpoint: GET \/nope/);
  });
});

describe('mutations', () => {
  it('POST /switchover without credentials is 401 with a Basic challenge, and writes nothing', async () => {
    const before = primaryBackend.failovers.length;
    const res = await send(primary, 'POST', '/switchover', { leader: 'a', candidate: 'b' }, null);
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm="pgwarden"/);
    assert.match(await res.text(), /authentication required/);
    for (const bad of [basic('admin', 'wrong'), basic('other', AUTH.password), 'Bearer xyz', 'Basic !!!', basic('admin', `${AUTH.password}x`)]) {
      assert.equal((await send(primary, 'POST', '/switchover', { leader: 'a', candidate: 'b' }, bad)).status, 401, bad);
    }
    assert.equal(primaryBackend.failovers.length, before);
  });

  it('every mutation requires credentials', async () => {
    for (const [method, path] of [['POST', '/failover'], ['POST', '/restart'], ['POST', '/reload'], ['POST', '/reinitialize'], ['PATCH', '/config'], ['PUT', '/config']]) {
      assert.equal((await send(replica, method, path, {}, null)).status, 401, `${method} ${path}`);
    }
    assert.equal(replicaBackend.restarts + replicaBackend.reloads + replicaBackend.reinitializations, 0);
    assert.equal(replicaBackend.configs.length, 0);
  });

  it('a bad candidate is 412 with the reason', async () => {
    const res = await send(primary, 'POST', '/switchover', { leader: 'a', candidate: 'x' });
    assert.equal(res.status, 412);
    assert.match(await res.text(), /candidate "x" is not a member of the cluster; members: a, b, c/);
    const wrongLeader = await send(primary, 'POST', '/switchover', { leader: 'b', candidate: 'c' });
    assert.equal(wrongLeader.status, 412);
    assert.match(await wrongLeader.text(), /current leader is "a", not "b"/);
    assert.equal(primaryBackend.failovers.length, 0);
  });

  it('an accepted switchover reaches the backend as an intent', async () => {
    const res = await send(primary, 'POST', '/switchover', { leader: 'a', candidate: 'b' });
    assert.equal(res.status, 200);
    assert.match(await res.text(), /Switchover from "a" to "b" requested/);
    assert.deepEqual(primaryBackend.failovers.at(-1), { kind: 'switchover', from: 'a', to: 'b', at: null, requestedAt: NOW });
  });

  it('a scheduled switchover is 202', async () => {
    const at = new Date(NOW + 3_600_000).toISOString();
    const res = await send(replica, 'POST', '/switchover', { leader: 'a', candidate: 'c', scheduled_at: at });
    assert.equal(res.status, 202);
    assert.match(await res.text(), /scheduled at/);
    assert.deepEqual(replicaBackend.failovers.at(-1), { kind: 'switchover', from: 'a', to: 'c', at: NOW + 3_600_000, requestedAt: NOW });
  });

  it('POST /failover needs a candidate', async () => {
    const res = await send(replica, 'POST', '/failover', {});
    assert.equal(res.status, 400);
    assert.match(await res.text(), /needs a candidate/);
    const ok = await send(replica, 'POST', '/failover', { candidate: 'b' });
    assert.equal(ok.status, 200);
    assert.deepEqual(replicaBackend.failovers.at(-1), { kind: 'failover', from: 'a', to: 'b', at: null, requestedAt: NOW });
  });

  it('malformed bodies are 400', async () => {
    const res = await send(primary, 'POST', '/switchover', '{"leader": ');
    assert.equal(res.status, 400);
    assert.match(await res.text(), /not valid JSON/);
    const proto = await send(primary, 'PATCH', '/config', '{"__proto__": {"ttl": 1}}');
    assert.equal(proto.status, 400);
    assert.match(await proto.text(), /reserved key "__proto__"/);
    const empty = await send(primary, 'POST', '/switchover', '');
    assert.equal(empty.status, 400);
    assert.match(await empty.text(), /JSON object/);
  });

  it('PATCH /config refuses an invalid result with the field and the rule', async () => {
    const res = await send(primary, 'PATCH', '/config', { ttl: 3 });
    assert.equal(res.status, 400);
    assert.match(await res.text(), /PATCH \/config is invalid: ttl: must be at least loop_wait \+ 2 \* retry_timeout = 1 \+ 2 \* 2 = 5 seconds \(got 3\)/);
    const typo = await send(primary, 'PATCH', '/config', { loop_wiat: 2 });
    assert.equal(typo.status, 400);
    assert.match(await typo.text(), /loop_wiat: unknown key; did you mean "loop_wait"\?/);
    const cron = await send(primary, 'PATCH', '/config', { backup: { repository: { type: 'posix', path: '/var/lib/pgwarden/backups' }, schedule: { full: 'weekly' } } });
    assert.equal(cron.status, 400);
    assert.match(await cron.text(), /PATCH \/config is invalid: backup\.schedule\.full: expected a cron expression like '0 3 \* \* 0'/);
    assert.equal(primaryBackend.configs.length, 0);
  });

  it('PATCH /config merges, null goes back to the default', async () => {
    primaryBackend.currentView!.config = { ...primaryBackend.currentView!.config, ttl: 30, postgresql: { parameters: { work_mem: '4MB' } } };
    const res = await send(primary, 'PATCH', '/config', { ttl: null, pause: true, postgresql: { parameters: { work_mem: '64MB', max_connections: 200 } } });
    assert.equal(res.status, 200);
    const stored = primaryBackend.configs.at(-1)!;
    assert.equal(stored.ttl, 5);
    assert.equal(stored.pause, true);
    assert.deepEqual(stored.postgresql.parameters, { work_mem: '64MB', max_connections: 200 });
    assert.deepEqual(await res.json(), stored);
  });

  it('PUT /config replaces the whole configuration', async () => {
    const res = await send(primary, 'PUT', '/config', { ttl: 9, loop_wait: 1, retry_timeout: 3 });
    assert.equal(res.status, 200);
    const stored = primaryBackend.configs.at(-1)!;
    assert.equal(stored.ttl, 9);
    assert.equal(stored.pause, false, 'fields left out take their defaults');
    assert.deepEqual(stored.postgresql.parameters, {});
    const bad = await send(primary, 'PUT', '/config');
    assert.equal(bad.status, 400);
  });

  it('restart, reload and reinitialize set the agent\'s flags', async () => {
    assert.equal((await send(replica, 'POST', '/restart')).status, 202);
    assert.equal((await send(replica, 'POST', '/restart', { schedule: '2030-01-01T00:00:00Z' })).status, 400);
    assert.equal(replicaBackend.restarts, 1);
    assert.equal((await send(replica, 'POST', '/reload', {})).status, 202);
    assert.equal(replicaBackend.reloads, 1);
    assert.equal((await send(replica, 'POST', '/reinitialize', {})).status, 202);
    assert.equal(replicaBackend.reinitializations, 1);
    const onLeader = await send(primary, 'POST', '/reinitialize', {});
    assert.equal(onLeader.status, 503);
    assert.match(await onLeader.text(), /is the leader/);
    assert.equal(primaryBackend.reinitializations, 0);
  });
});

describe('startApi options', () => {
  it('refuses to run open (no auth) on a non-loopback address', async () => {
    await assert.rejects(
      startApi({ listen: '0.0.0.0:0', backend: new FixedBackend('a', null), auth: null }),
      (e: unknown) => e instanceof PgwardenError && e.code === 'CONFIG_INVALID' && /api\.username and api\.password/.test(e.message),
    );
  });

  it('refuses a malformed listen address', async () => {
    await assert.rejects(startApi({ listen: '8008', backend: new FixedBackend('a', null), auth: AUTH }), /not "host:port"/);
  });

  it('without auth on loopback the mutations are open', async () => {
    const backend = new FixedBackend('b', clusterView());
    const open = await startApi({ listen: '127.0.0.1:0', backend, auth: null });
    try {
      assert.match(open.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.equal((await send(open, 'POST', '/reload', undefined, null)).status, 202);
      assert.equal(backend.reloads, 1);
    } finally {
      await open.close();
    }
  });
});
