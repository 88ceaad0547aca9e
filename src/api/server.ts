/**
 * The agent's REST API (Patroni-compatible paths and codes) on fastify. Reads come from the backend's last
 * status and view; mutations only record intents through the backend, behind HTTP Basic authentication.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyReply, type FastifyRequest } from 'fastify';
import { applyConfigPatch, formatHostPort, parseHostPort, validateDynamicConfig } from '../config/schema.js';
import { PgwardenError, describeError, isPgwardenError, type ErrorCode } from '../errors.js';
import type { ApiBackend } from '../ha/api-backend.js';
import {
  HEALTH_ROUTES,
  clusterBody,
  evaluateHealth,
  historyBody,
  memberStatusBody,
  type HealthInputs,
  type HealthQuery,
} from './health.js';
import { planFailover, planReinitialize, planRestart } from './intents.js';
import type { ApiHttpsOptions } from '../config/api-tls.js';

export interface ApiCredentials {
  username: string;
  password: string;
}

export interface ApiOptions {
  /** "host:port" to bind; port 0 picks a free port (see the returned url). */
  listen: string;
  backend: ApiBackend;
  /** Credentials for the mutating endpoints; null leaves them open, allowed only on a loopback address. */
  auth: ApiCredentials | null;
  logger?: FastifyBaseLogger;
  /** Serve HTTPS (see loadApiHttps); absent or null: plain HTTP. */
  https?: ApiHttpsOptions | null;
  /** Wall clock in ms; injectable for tests. */
  now?: () => number;
}

export interface ApiServer {
  /** Base URL with the bound port, e.g. http://127.0.0.1:41234 */
  url: string;
  close(): Promise<void>;
}

const STATUS_BY_CODE: Partial<Record<ErrorCode, number>> = {
  CONFIG_INVALID: 400,
  API_BAD_REQUEST: 400,
  API_UNAUTHORIZED: 401,
  MEMBER_NOT_FOUND: 404,
  SWITCHOVER_REJECTED: 412,
  DCS_CONFLICT: 409,
  DCS_UNAVAILABLE: 503,
  TIMEOUT: 503,
};

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** A checker of `Authorization: Basic …` whose running time does not depend on how much of the secret matched. */
function basicAuthChecker(credentials: ApiCredentials): (header: string | undefined) => boolean {
  const expected = digest(`${credentials.username}:${credentials.password}`);
  return (header) => {
    const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '');
    const given = match ? Buffer.from(match[1], 'base64').toString('utf8') : '';
    // Comparing fixed-length digests keeps timingSafeEqual's equal-length rule from leaking the secret's length.
    return timingSafeEqual(digest(given), expected) && match !== null;
  };
}

function firstValues(query: unknown): HealthQuery {
  const out: Record<string, string | undefined> = {};
  if (typeof query !== 'object' || query === null) return out;
  for (const [key, value] of Object.entries(query)) {
    out[key] = Array.isArray(value) ? (value[0] as string | undefined) : typeof value === 'string' ? value : undefined;
  }
  return out;
}

/** JSON.parse that refuses keys able to reach an object's prototype during merges. */
function parseJsonBody(text: string): unknown {
  if (text.trim() === '') return undefined;
  return JSON.parse(text, (key, value: unknown) => {
    if (key === '__proto__' || key === 'constructor' || key === 'prototype') {
      throw new PgwardenError('API_BAD_REQUEST', `the body uses the reserved key "${key}"`);
    }
    return value;
  });
}

export async function startApi(options: ApiOptions): Promise<ApiServer> {
  const { backend } = options;
  const address = parseHostPort(options.listen, { allowPortZero: true });
  if (!address) {
    throw new PgwardenError('CONFIG_INVALID', `api.listen ${JSON.stringify(options.listen)} is not "host:port": write it like 127.0.0.1:8008`);
  }
  if (options.auth === null && !isLoopback(address.host)) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `the REST API would accept switchovers and restarts from anyone on ${options.listen}: set api.username and api.password, or listen on 127.0.0.1`,
    );
  }
  const now = options.now ?? Date.now;
  const startedAt = now();
  const authorized = options.auth ? basicAuthChecker(options.auth) : () => true;
  const log = options.logger;

  const app = Fastify({
    // The https option changes fastify's server type only; the routes below are the same for both.
    ...((options.https ? { https: options.https } : {}) as object),
    ...(log ? { loggerInstance: log } : { logger: false }),
    // Load balancers poll the health endpoints every few seconds; per-request lines would drown the log.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 64 * 1024,
    routerOptions: { ignoreTrailingSlash: true },
    return503OnClosing: true,
  });

  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(null, parseJsonBody(body as string));
    } catch (e) {
      const error = new PgwardenError('API_BAD_REQUEST', `the body is not valid JSON: ${(e as Error).message}`);
      done(error, undefined);
    }
  });

  app.setErrorHandler((error: unknown, request, reply) => {
    let status: number;
    let message: string;
    if (isPgwardenError(error)) {
      status = STATUS_BY_CODE[error.code] ?? 500;
      message = describeError(error);
    } else {
      const e = error as { statusCode?: number; message?: string };
      status = typeof e.statusCode === 'number' && e.statusCode >= 400 ? e.statusCode : 500;
      message = e.message ?? String(error);
      if (status >= 500) message = `internal error: ${message}; the agent's log has the details`;
    }
    if (status >= 500) log?.error({ err: error, method: request.method, url: request.url }, 'REST API request failed');
    void reply.code(status).type('text/plain; charset=utf-8').send(`${message}\n`);
  });

  app.setNotFoundHandler((request, reply) => {
    void reply
      .code(404)
      .type('text/plain; charset=utf-8')
      .send(`no such endpoint: ${request.method} ${request.url.split('?')[0]}\n`);
  });

  const inputs = (): HealthInputs => ({
    memberName: backend.memberName,
    status: backend.status(),
    view: backend.view(),
    pgRunning: backend.pgRunning(),
    now: now(),
    startedAt,
  });

  const text = (reply: FastifyReply, status: number, message: string) =>
    reply.code(status).type('text/plain; charset=utf-8').send(`${message}\n`);

  // ---- health checks: GET answers with the member's status, HEAD (added by fastify) and OPTIONS with the code only
  for (const [path, check] of Object.entries(HEALTH_ROUTES)) {
    app.route({
      method: ['GET', 'OPTIONS'],
      url: path,
      handler: async (request, reply) => {
        const snapshot = inputs();
        const result = evaluateHealth(check, snapshot, firstValues(request.query));
        reply.code(result.code).header('x-pgwarden-check', result.reason);
        if (request.method !== 'GET' || check === 'liveness' || check === 'readiness') return reply.send();
        const body = memberStatusBody(snapshot, backend.cluster) ?? {
          state: 'unknown',
          role: 'uninitialized',
          name: backend.memberName,
          reason: 'the agent has not completed its first cycle yet',
        };
        return reply.send(body);
      },
    });
  }

  // ---- read-only JSON
  app.get('/patroni', async (_request, reply) => {
    const body = memberStatusBody(inputs(), backend.cluster);
    if (!body) return text(reply, 503, 'the agent has not completed its first cycle yet: retry in a few seconds');
    return reply.send(body);
  });

  const withView = (reply: FastifyReply, render: (view: NonNullable<ReturnType<ApiBackend['view']>>) => unknown) => {
    const view = backend.view();
    if (!view) return text(reply, 503, 'this agent has not read the cluster from etcd yet: retry in a few seconds');
    return reply.send(render(view));
  };
  app.get('/cluster', async (_request, reply) => withView(reply, (view) => clusterBody(view, backend.cluster)));
  app.get('/history', async (_request, reply) => withView(reply, (view) => historyBody(view)));
  app.get('/config', async (_request, reply) => withView(reply, (view) => view.config));
  app.get('/metrics', async (_request, reply) => {
    const body = await backend.metrics();
    return reply.code(200).type(backend.metricsContentType).send(body);
  });

  // ---- mutations
  const requireAuth = async (request: FastifyRequest, reply: FastifyReply) => {
    if (authorized(request.headers.authorization)) return;
    log?.warn({ method: request.method, url: request.url, remote: request.ip }, 'REST API call refused: bad or missing credentials');
    reply.header('www-authenticate', 'Basic realm="pgwarden", charset="UTF-8"');
    return text(reply, 401, 'authentication required: send HTTP Basic credentials (api.username / api.password of the agent)');
  };
  const audit = (request: FastifyRequest, what: string, detail: Record<string, unknown> = {}) =>
    log?.info({ method: request.method, url: request.url.split('?')[0], remote: request.ip, ...detail }, what);

  for (const kind of ['switchover', 'failover'] as const) {
    app.post(`/${kind}`, { preHandler: requireAuth }, async (request, reply) => {
      const plan = planFailover(kind, request.body, backend.view(), now());
      if (!plan.ok) {
        audit(request, `${kind} refused`, { status: plan.status, reason: plan.message });
        return text(reply, plan.status, plan.message);
      }
      await backend.requestFailover(plan.intent);
      audit(request, `${plan.intent.kind} requested`, { intent: plan.intent });
      return text(reply, plan.status, plan.message);
    });
  }

  app.post('/restart', { preHandler: requireAuth }, async (request, reply) => {
    const plan = planRestart(request.body, backend.status());
    if (plan.ok) {
      backend.requestRestart();
      audit(request, 'restart requested');
    }
    return text(reply, plan.status, plan.message);
  });

  app.post('/reload', { preHandler: requireAuth }, async (request, reply) => {
    backend.requestReload();
    audit(request, 'reload requested');
    return text(reply, 202, 'reload requested: the agent reloads PostgreSQL in its next cycle');
  });

  app.post('/reinitialize', { preHandler: requireAuth }, async (request, reply) => {
    const plan = planReinitialize(backend.memberName, backend.view());
    if (plan.ok) {
      backend.requestReinitialize();
      audit(request, 'reinitialize requested');
    }
    return text(reply, plan.status, plan.message);
  });

  const storeConfig = async (request: FastifyRequest, reply: FastifyReply, build: (current: ReturnType<typeof validateDynamicConfig>) => ReturnType<typeof validateDynamicConfig>) => {
    const view = backend.view();
    if (!view) return text(reply, 503, 'this agent has not read the cluster from etcd yet: retry in a few seconds');
    let next;
    try {
      next = build(view.config);
    } catch (e) {
      if (isPgwardenError(e) && e.code === 'CONFIG_INVALID') return text(reply, 400, e.message);
      throw e;
    }
    await backend.setDynamicConfig(next);
    audit(request, 'dynamic configuration changed', { config: next });
    return reply.code(200).send(next);
  };
  app.patch('/config', { preHandler: requireAuth }, async (request, reply) =>
    storeConfig(request, reply, (current) => applyConfigPatch(current, request.body, 'PATCH /config')),
  );
  app.put('/config', { preHandler: requireAuth }, async (request, reply) =>
    storeConfig(request, reply, () => validateDynamicConfig(request.body, 'PUT /config')),
  );

  await app.listen({ host: address.host, port: address.port });
  const bound = app.server.address() as AddressInfo;
  return {
    url: `${options.https ? 'https' : 'http'}://${formatHostPort(address.host, bound.port)}`,
    close: () => app.close(),
  };
}
