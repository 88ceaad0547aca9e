/**
 * What every rule reads: the cycle's input, and the facts about it that several rules share. Pure functions of
 * that input; no rule keeps state, so the order in which the dispatcher asks them cannot change an answer.
 */
import { formatLsn } from '../../postgres/lsn.js';
import type { Action, Clock, Decision, Observation, RuleId } from '../types.js';
import type { ClusterView, FailoverIntent, MemberStatus } from '../../cluster/types.js';
import type { ControlState, PgObservation } from '../../postgres/observation.js';
import type { DynamicConfig } from '../../cluster/dynamic-config.js';

/** decide()'s four arguments in one value, handed unchanged to every rule. */
export interface RuleInput {
  readonly view: ClusterView;
  readonly obs: Observation;
  readonly config: DynamicConfig;
  readonly clock: Clock;
}

/** Failures to start PostgreSQL in place after which a primary gives its key up for a failover. */
export const MAX_START_FAILURES = 3;

/** Control-file states of a server that was last running as a primary (so it may need pg_rewind to rejoin). */
export const PRIMARY_CONTROL_STATES: ReadonlySet<ControlState> = new Set<ControlState>([
  'shut down',
  'in production',
  'shutting down',
  'in crash recovery',
  'starting up',
]);

/** How long an operator's switchover/failover request stays valid once due. */
export function intentTimeoutMs(config: DynamicConfig): number {
  return Math.max(30_000, config.ttl * 6_000);
}

export function decision(rule: RuleId, actions: Action[], reason: string, role: Decision['role'], state: Decision['state']): Decision {
  return { rule, actions, reason, role, state };
}

/** The leader key's holder, or null when it is free. */
export function leaderOf(view: ClusterView): string | null {
  return view.leader?.name ?? null;
}

/** PostgreSQL runs as a primary and answers queries. */
export function pgIsPrimary(pg: PgObservation): boolean {
  return pg.running && pg.accepting && pg.inRecovery === false;
}

/** A running server we could not query might be a primary: counted as one wherever that is the safe side. */
export function pgMaybePrimary(pg: PgObservation): boolean {
  return pg.running && pg.inRecovery !== true;
}

/** The member state PostgreSQL's observation amounts to. */
export function pgState(pg: PgObservation): Decision['state'] {
  if (!pg.running) return pg.controlState === 'in production' ? 'crashed' : 'stopped';
  if (pg.inRecovery === true) return pg.streaming ? 'streaming' : 'running';
  return 'running';
}

/** The role PostgreSQL runs in, or last ran in according to its control file when stopped. */
export function pgRole(pg: PgObservation): Decision['role'] {
  if (pg.running) return pg.inRecovery === true ? 'replica' : 'primary';
  return pg.controlState && PRIMARY_CONTROL_STATES.has(pg.controlState) ? 'primary' : 'replica';
}

/** Refreshes the key we hold; a restarted agent (whose memory says it holds nothing) rebinds it to its new lease. */
export function keepKey(input: RuleInput): Action {
  return input.obs.memory.holdsLeader ? { type: 'refreshLeader' } : { type: 'acquireLeader' };
}

export function memberOf(input: RuleInput, name: string): MemberStatus | undefined {
  return input.view.members[name];
}

export interface ActiveIntent {
  intent: FailoverIntent;
  /** Its time has come (`at`, or when requested). */
  due: boolean;
  /** Due for longer than intentTimeoutMs: it can no longer be carried out. */
  stale: boolean;
}

/** The operator's failover/switchover request with whether it is due and whether it is stale; null without one. */
export function activeIntent(input: RuleInput): ActiveIntent | null {
  const intent = input.view.failover;
  if (!intent) return null;
  const dueAt = intent.at ?? intent.requestedAt;
  const due = input.clock.wall >= dueAt;
  const stale = input.clock.wall > dueAt + intentTimeoutMs(input.config);
  return { intent, due, stale };
}

/** The member a request that is not stale names as the new primary, or null. */
export function intentTarget(active: ActiveIntent | null): string | null {
  return active && !active.stale && active.intent.to ? active.intent.to : null;
}

/** Bytes a WAL position lies behind the cluster's last published optime; null when either is unknown. */
export function lagOf(view: ClusterView, walPosition: number | null): number | null {
  if (view.optime === null || walPosition === null) return null;
  return Math.max(0, view.optime - walPosition);
}

/** The member is listed in the sync key (whoever owns it). */
export function inSync(view: ClusterView, name: string): boolean {
  const sync = view.sync;
  return !!sync && sync.members.includes(name);
}

/** A WAL position for a reason sentence; a peer's malformed answer must not make decide() throw. */
export function lsnText(position: number): string {
  return Number.isSafeInteger(position) && position >= 0 ? formatLsn(position) : String(position);
}

/** What a rule that leaves the primary running tells its steady-state decision (leader.ts): why it waits. */
export interface LeaderNote {
  /** The id the primary's decision carries: the rule that made it wait. */
  rule: RuleId;
  /** Goes into the reason sentence. */
  text: string;
  /** A switchover waits for the proxies' acknowledgements: the `drain` key must stay. */
  keepsDrain: boolean;
}

/** A rule on the primary either decides, or leaves the primary at its work with a note saying why it waits. */
export type LeaderOutcome = { decision: Decision } | { note: LeaderNote };
