import { describeError, PgwardenError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Dcs } from '../dcs/dcs.js';
import { RewindFailedError, type PeerAddress } from '../postgres/server.js';
import type { AgentClock, PostgresControl } from './world.js';
import { newestTimeline } from './decide.js';
import type { Action, AgentMemory } from './types.js';
import type { ClusterView } from '../cluster/types.js';
import type { DynamicConfig } from '../cluster/dynamic-config.js';

export interface ExecutorContext {
  me: string;
  dcs: Dcs;
  pg: PostgresControl;
  memory: AgentMemory;
  /** The view decide() saw this cycle (member addresses come from it). */
  view: ClusterView;
  /** Dynamic settings written to etcd by the member that bootstraps the cluster. */
  bootstrapConfig: DynamicConfig;
  clock: AgentClock;
  log: Logger;
  /** The reason sentence of the decision whose actions run (a re-clone records it). */
  reason?: string;
}

/** How long setSynchronousStandbys waits for PostgreSQL to report a newly listed standby as synchronous. */
const SYNC_CONFIRM_MS = 1500;

/**
 * Carries out one action. All I/O of the HA loop lives here; results that the next decision needs are
 * written to `ctx.memory`. Throws on failure, and the loop stops running the cycle's remaining actions.
 */
export async function execute(action: Action, ctx: ExecutorContext): Promise<void> {
  const { dcs, pg, memory, me } = ctx;
  switch (action.type) {
    case 'bootstrap':
      return bootstrap(ctx);
    case 'clone':
      return pg.clone(peer(ctx, action.from));
    case 'start':
      try {
        await pg.start(action.role, action.follow ? peer(ctx, action.follow) : null);
        memory.startFailures = 0;
      } catch (e) {
        memory.startFailures += 1;
        throw e;
      }
      return;
    case 'stop':
      // Positions recorded for synchronous standbys belong to this server's time as primary.
      memory.syncAddedAt = {};
      await pg.stop(action.mode);
      return;
    case 'restart':
      return pg.restart();
    case 'reload':
      return pg.reload();
    case 'promote': {
      memory.syncAddedAt = {};
      // decide() recorded the timeline after the newest one in the history: PostgreSQL must pick that one.
      await pg.promote({ timelinesTaken: newestTimeline(ctx.view.history) });
      memory.needsRejoin = false;
      return;
    }
    case 'checkpoint':
      return pg.checkpoint();
    case 'follow':
      return pg.follow(action.leader ? peer(ctx, action.leader) : null);
    case 'rewind':
      try {
        await pg.rewind(peer(ctx, action.from));
        memory.rewindFailed = false;
        memory.rewindError = null;
      } catch (e) {
        // Only a pg_rewind that ran and failed calls for a fresh clone; a source that could not be reached (it died,
        // or is still starting) or a server found still running is retried.
        if (e instanceof RewindFailedError && !isConnectionFailure(e)) {
          memory.rewindFailed = true;
          memory.rewindError = rewindErrorSummary(e.message);
        }
        throw e;
      }
      return;
    case 'reinitialize': {
      const from = peer(ctx, action.from);
      const reason = ctx.reason || `reinitializing from ${from.name}`;
      // A re-clone copies everything and is the last resort: always say why.
      ctx.log.warn({ from: from.name, pgRewindError: memory.rewindError }, `re-cloning this member from ${from.name}: ${reason}`);
      if (pg.postmasterPid() !== null) await pg.stop('immediate');
      // The old data stays until the new copy is complete.
      await pg.reclone(from);
      memory.rewindFailed = false;
      memory.rewindError = null;
      memory.lastReclone = { at: ctx.clock.wall(), reason };
      return;
    }
    case 'acquireLeader': {
      // The key inherits the lease's expiry, so the lease is refreshed first and its send time is what the
      // safety deadline counts from.
      const sentAt = ctx.clock.mono();
      if (!(await dcs.keepAlive())) throw new PgwardenError('DCS_CONFLICT', 'The agent lease had expired; it is re-created next cycle.');
      if (!(await dcs.acquireLeader(me))) {
        throw new PgwardenError('DCS_CONFLICT', 'Another member took the leader key first.');
      }
      memory.holdsLeader = true;
      memory.leaderRefreshSentAt = sentAt;
      return;
    }
    case 'refreshLeader':
      return refreshLeader(ctx);
    case 'releaseLeader':
      memory.holdsLeader = false;
      memory.leaderRefreshSentAt = null;
      await dcs.releaseLeader(me);
      return;
    case 'setSynchronousStandbys':
      return setSynchronousStandbys(ctx, action.names);
    case 'writeSync':
      return dcs.setSync({ leader: me, members: action.members });
    case 'manageSlots':
      return pg.manageSlots(action.create, action.drop);
    case 'clearFailover':
      return dcs.clearFailover();
    case 'requestDrain':
      return dcs.setDrain(action.drain);
    case 'clearDrain':
      return dcs.clearDrain();
    case 'clearShutdown':
      return dcs.clearShutdown();
    case 'requestSwitchover':
      return dcs.setFailover(action.intent);
    case 'recordHistory':
      await dcs.appendHistory({
        timeline: action.timeline,
        lsn: action.lsn,
        at: ctx.clock.wall(),
        reason: action.reason,
        leader: me,
        ...(action.parent !== null ? { parent: action.parent } : {}),
      });
      return;
    case 'clearRequests':
      memory.requests = { restart: false, reload: false, reinitialize: false };
      return;
  }
}

/**
 * Refreshes the leader lease. When etcd answers that the key is no longer ours, PostgreSQL is stopped at
 * once: someone else may already hold the key.
 */
export async function refreshLeader(ctx: ExecutorContext): Promise<void> {
  const { memory } = ctx;
  const sentAt = ctx.clock.mono();
  const ok = await ctx.dcs.refreshLeader(ctx.me);
  if (ok) {
    memory.holdsLeader = true;
    // A slower refresh that was sent earlier must not move the deadline backwards.
    memory.leaderRefreshSentAt = Math.max(memory.leaderRefreshSentAt ?? 0, sentAt);
    return;
  }
  const wasHolding = memory.holdsLeader;
  memory.holdsLeader = false;
  memory.leaderRefreshSentAt = null;
  if (wasHolding && ctx.pg.emergencyStop(false)) {
    ctx.log.warn('the leader key is no longer ours: stopped PostgreSQL at once');
  }
  throw new PgwardenError('DCS_CONFLICT', 'The leader key is no longer held by this member.');
}

async function bootstrap(ctx: ExecutorContext): Promise<void> {
  const { dcs, pg, memory, me, log } = ctx;
  if (!(await dcs.claimInitialize())) throw new PgwardenError('DCS_CONFLICT', 'Another member claimed the bootstrap first.');
  log.info('won the bootstrap race: running initdb');
  let systemId: string;
  try {
    // The key first: even a brand-new primary accepts writes only while holding it. The lease keeper
    // refreshes it while initdb runs.
    const sentAt = ctx.clock.mono();
    if (!(await dcs.keepAlive()) || !(await dcs.acquireLeader(me))) {
      throw new PgwardenError('DCS_CONFLICT', 'Won the bootstrap, but could not take the leader key; retrying.');
    }
    memory.holdsLeader = true;
    memory.leaderRefreshSentAt = sentAt;
    await dcs.initConfig(ctx.bootstrapConfig);
    systemId = await pg.bootstrap();
  } catch (e) {
    log.error({ err: describeError(e) }, 'bootstrap failed: releasing the initialize key so that another member can try');
    await pg.stop('immediate').catch(() => undefined);
    await pg.wipe().catch(() => undefined);
    if (memory.holdsLeader) await dcs.releaseLeader(me).catch(() => undefined);
    memory.holdsLeader = false;
    memory.leaderRefreshSentAt = null;
    await dcs.deleteInitialize().catch(() => undefined);
    throw e;
  }
  await dcs.setInitialize(systemId);
  await dcs.appendHistory({ timeline: 1, lsn: 0, at: ctx.clock.wall(), reason: 'bootstrap', leader: me });
}

/**
 * Writes synchronous_standby_names, then records for each listed standby the WAL position once PostgreSQL
 * reports it synchronous: from then on every commit waits for it, and once it has flushed past that position
 * it holds every commit acknowledged before as well — the condition for adding it to `sync` (see decide()).
 */
async function setSynchronousStandbys(ctx: ExecutorContext, names: string[]): Promise<void> {
  const { pg, memory } = ctx;
  await pg.setSynchronousStandbys(names);
  for (const n of Object.keys(memory.syncAddedAt)) if (!names.includes(n)) delete memory.syncAddedAt[n];
  const waiting = new Set(names.filter((n) => n !== '*' && memory.syncAddedAt[n] === undefined));
  const deadline = ctx.clock.mono() + SYNC_CONFIRM_MS;
  while (waiting.size > 0 && ctx.clock.mono() < deadline) {
    for (const row of await pg.synchronousStandbys()) {
      if (!waiting.has(row.name)) continue;
      if (row.lsn !== null) memory.syncAddedAt[row.name] = row.lsn;
      waiting.delete(row.name);
    }
    if (waiting.size > 0) await ctx.clock.sleep(50);
  }
}

function peer(ctx: ExecutorContext, name: string): PeerAddress {
  const m = ctx.view.members[name];
  if (!m) throw new PgwardenError('MEMBER_NOT_FOUND', `Member ${name} is not registered in etcd any more; the next cycle decides again.`);
  return { name, host: m.host, port: m.port };
}

/**
 * The lines that say why pg_rewind failed (its `error:` lines and the FATAL/PANIC of its single-user crash
 * recovery), without the progress chatter and the hint around them; at most 300 characters.
 */
export function rewindErrorSummary(message: string): string {
  const body = message.replace(/^pg_rewind failed \([^)]*\): /, '');
  const parts = body.split(' | ').map((p) => p.trim());
  const telling = parts.filter((p) => /\b(error|FATAL|PANIC):/.test(p)).map((p) => p.replace(/^\S+ \S+ \S+ \[\d+\] /, ''));
  const text = telling.length > 0 ? telling.join('; ') : body;
  return text.length > 300 ? `${text.slice(0, 299)}…` : text;
}

/** pg_rewind / pg_basebackup could not connect to the source at all. */
function isConnectionFailure(e: unknown): boolean {
  const text = e instanceof Error ? e.message : String(e);
  return /connection to server .* failed|could not connect|Connection refused|the database system is (starting up|shutting down)/i.test(text);
}
