/**
 * The CLI's cluster commands: each finds the cluster, reads it from etcd, checks the request, writes an intent
 * (etcd) or asks a member's agent (REST), and prints. None of them promotes, demotes or touches PostgreSQL.
 */
import { applyConfigSettings, splitConfigSetting } from '../config/schema.js';
import { closest } from '../config/suggest.js';
import type { ProxyRegistration } from '../dcs/codec.js';
import type { EtcdDcs } from '../dcs/etcd.js';
import { PgwardenError } from '../errors.js';
import type { ClusterView, MemberStatus } from '../cluster/types.js';
import type { DynamicConfig } from '../cluster/dynamic-config.js';
import { planFailover, parseSchedule } from './failover-plan.js';
import { configDiff, describeIntent, historyJson, listJson, renderConfig, renderHistory, renderList, formatTime } from './format.js';
import { confirm, type Io } from './io.js';
import { postToMember } from './rest.js';
import { connectDcs, loadCluster, resolveTarget, type ClusterTarget, type TargetOptions } from './target.js';
import { waitForNewPrimary, waitForPause } from './wait.js';

import type { OutputFormat } from './options.js';

export type { OutputFormat };

interface Session {
  target: ClusterTarget;
  dcs: EtcdDcs;
  view: ClusterView;
}

/** Finds the cluster, reads it, runs `body`, and always closes the etcd client. */
async function withCluster<T>(options: TargetOptions, body: (session: Session) => Promise<T>): Promise<T> {
  const target = await resolveTarget(options);
  const dcs = connectDcs(target);
  try {
    const view = await loadCluster(dcs, target);
    return await body({ target, dcs, view });
  } finally {
    await dcs.close();
  }
}

function sourceOf(target: ClusterTarget): string {
  return `etcd ${target.etcd.join(',')}`;
}

function printList(io: Io, target: ClusterTarget, view: ClusterView, format: OutputFormat, proxies: readonly ProxyRegistration[] = []): void {
  if (format === 'json') io.out(JSON.stringify(listJson(target.cluster, view, proxies), null, 2));
  else io.out(renderList(target.cluster, view, sourceOf(target), proxies));
}

// ---- reading ---------------------------------------------------------------------------------------------------

export async function listCommand(io: Io, options: TargetOptions & { format: OutputFormat }): Promise<void> {
  await withCluster(options, async ({ target, dcs, view }) => printList(io, target, view, options.format, await dcs.loadProxies()));
}

export async function historyCommand(io: Io, options: TargetOptions & { format: OutputFormat }): Promise<void> {
  await withCluster(options, async ({ view }) => {
    if (options.format === 'json') io.out(JSON.stringify(historyJson(view.history), null, 2));
    else io.out(renderHistory(view.history));
  });
}

export async function showConfigCommand(io: Io, options: TargetOptions & { format: OutputFormat }): Promise<void> {
  await withCluster(options, async ({ view }) => {
    io.out(options.format === 'json' ? JSON.stringify(view.config, null, 2) : renderConfig(view.config));
  });
}

// ---- dynamic configuration ---------------------------------------------------------------------------------------

export async function editConfigCommand(io: Io, options: TargetOptions & { set: string[]; force: boolean }): Promise<void> {
  if (options.set.length === 0) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      'nothing to change: pass one or more --set key=value, like --set ttl=10 or --set postgresql.parameters.work_mem=64MB',
    );
  }
  await withCluster(options, async ({ dcs, view }) => {
    const next: DynamicConfig = applyConfigSettings(view.config, options.set.map(splitConfigSetting));
    const diff = configDiff(view.config, next);
    if (diff.length === 0) {
      io.out('Nothing changes: the configuration already has these values.');
      return;
    }
    io.out(diff.join('\n'));
    await confirm(io, 'Apply these changes?', { force: options.force, what: 'changing the configuration' });
    await dcs.setConfig(next);
    io.out('Configuration changed; the agents apply it in their next cycle.');
  });
}

export async function pauseCommand(io: Io, options: TargetOptions & { pause: boolean; wait: boolean; timeoutSec: number }): Promise<void> {
  await withCluster(options, async ({ dcs, view }) => {
    const word = options.pause ? 'paused' : 'resumed';
    if (view.config.pause === options.pause) {
      io.out(`The cluster is already ${options.pause ? 'paused' : 'active (not paused)'}.`);
    } else {
      await dcs.setConfig({ ...view.config, pause: options.pause });
      io.out(
        options.pause
          ? 'Maintenance mode on: the agents stop acting (no failover) while PostgreSQL keeps running.'
          : 'Maintenance mode off: the agents act again.',
      );
    }
    if (options.wait) {
      await waitForPause(dcs, io, options.pause, options.timeoutSec * 1000);
      io.out(`Every member has ${word}.`);
    }
  });
}

// ---- switchover and failover --------------------------------------------------------------------------------------

export interface FailoverCommandOptions extends TargetOptions {
  kind: 'switchover' | 'failover';
  primary?: string;
  candidate?: string;
  scheduled?: string;
  force: boolean;
  timeoutSec: number;
  format: OutputFormat;
}

export async function failoverCommand(io: Io, options: FailoverCommandOptions): Promise<void> {
  const now = Date.now();
  const at = options.scheduled !== undefined ? parseSchedule(options.scheduled, now) : null;
  await withCluster(options, async ({ target, dcs, view }) => {
    const intent = planFailover(
      view,
      { kind: options.kind, primary: options.primary ?? null, candidate: options.candidate ?? null, at },
      now,
    );
    if (view.failover) io.err(`Note: this replaces the pending request (${describeIntent(view.failover)}).`);
    const target_ = intent.to ?? 'the best replica';
    const question =
      options.kind === 'switchover'
        ? `Switch over from ${intent.from} to ${target_}${at !== null ? ` at ${formatTime(at)}` : ' now'}?`
        : `Fail over ${intent.from ? `from ${intent.from} ` : ''}to ${target_} now${intent.from ? ' (no lag check: recent commits may be lost)' : ''}?`;
    await confirm(io, question, { force: options.force, what: `starting a ${options.kind}` });
    await dcs.setFailover({ ...intent, requestedAt: Date.now() });
    if (at !== null) {
      io.out(`Switchover from ${intent.from} to ${target_} scheduled at ${formatTime(at)}; \`pgwarden list\` shows it until then.`);
      return;
    }
    io.err(`${options.kind === 'switchover' ? 'Switchover' : 'Failover'} requested: waiting for ${target_} to become primary…`);
    const started = Date.now();
    const after = await waitForNewPrimary(dcs, io, {
      kind: options.kind,
      oldLeader: intent.from,
      candidate: intent.to,
      timeoutMs: options.timeoutSec * 1000,
    });
    io.err(`${after.leader?.name} is the new primary (after ${((Date.now() - started) / 1000).toFixed(1)} s).`);
    printList(io, target, after, options.format);
  });
}

// ---- requests to one member's agent -------------------------------------------------------------------------------

function membersOrThrow(view: ClusterView, names: string[]): MemberStatus[] {
  const known = Object.keys(view.members).sort();
  return names.map((name) => {
    const member = view.members[name];
    if (member) return member;
    const suggestion = closest(name, known);
    throw new PgwardenError(
      'MEMBER_NOT_FOUND',
      `"${name}" is not a member of the cluster${suggestion ? `: did you mean "${suggestion}"?` : ''} (members: ${known.join(', ') || 'none'})`,
    );
  });
}

export async function memberRequestCommand(
  io: Io,
  options: TargetOptions & { action: 'restart' | 'reload' | 'reinitialize'; members: string[]; force: boolean; pending?: boolean },
): Promise<void> {
  await withCluster(options, async ({ target, view }) => {
    const members = membersOrThrow(view, options.members);
    const names = members.map((m) => m.name).join(', ');
    const verb = { restart: 'Restart PostgreSQL on', reload: 'Reload the configuration of', reinitialize: 'Reinitialize (wipe and clone again)' }[
      options.action
    ];
    if (options.action === 'reinitialize') {
      const leader = view.leader?.name;
      const m = members[0];
      if (m.name === leader) {
        throw new PgwardenError(
          'REQUEST_REFUSED',
          `${m.name} is the primary and reinitializing it would wipe the only writable copy: switch over first (\`pgwarden switchover --candidate <replica>\`), then reinit it`,
        );
      }
    }
    await confirm(io, `${verb} ${names}?`, { force: options.force, what: `${options.action === 'reinitialize' ? 'reinitializing' : `${options.action}ing`} ${names}` });
    let failed = 0;
    for (const m of members) {
      const body = options.action === 'restart' && options.pending ? { restart_pending: true } : {};
      try {
        const answer = await postToMember(m.name, m.apiUrl, options.action, target.api, body, target.apiTls);
        io.out(`${m.name}: ${answer.message}`);
      } catch (e) {
        if (members.length === 1) throw e;
        failed += 1;
        io.err(`${m.name}: ${(e as Error).message}`);
      }
    }
    if (failed > 0) {
      throw new PgwardenError('REQUEST_REFUSED', `${failed} of ${members.length} members did not take the ${options.action} request (see above)`);
    }
  });
}
