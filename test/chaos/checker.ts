/**
 * The chaos suite's judge: reads what the workload recorded (every write attempted, with the server that
 * acknowledged it and when), who held the leader key when (an etcd watch in the harness, on the same clock), the
 * faults injected, and the final table, and says whether pgwarden kept its promises:
 *  - every acknowledged write is present at the end (synchronous mode; in asynchronous mode the lost ones are
 *    counted and must lie within maximum_lag_on_failover of the promotion point);
 *  - no write was acknowledged by a server while another member held the leader key (no two writable primaries);
 *  - no row appears twice, and no row appears that no client ever tried to write;
 *  - how long writes through the proxies were unavailable around each fault;
 *  - how the members rejoined: by pg_rewind, never by a re-clone (the faults leave every data directory intact).
 * Pure: no I/O, no clock. The harness feeds it; unit tests feed it hand-made histories.
 */
import { NO_REJOINS, type RejoinCounts } from './rejoins.js';

/** One INSERT a workload client attempted. Times are ms on the harness's clock (performance.now based). */
export interface WriteOp {
  id: number;
  /** The workload client that sent it. */
  client: string;
  /** How it travelled: a proxy id ('proxy1') or 'direct'. */
  via: string;
  sentAt: number;
  /** When the answer (success or error) arrived; null if none came before the run ended. */
  doneAt: number | null;
  /** ok: committed and acknowledged; failed: an error that proves it was not committed; unknown: no answer, or a
   *  connection lost mid-commit (it may or may not be there). */
  outcome: 'ok' | 'failed' | 'unknown';
  /** The member whose PostgreSQL acknowledged it (from the row's RETURNING), for ok writes. */
  server: string | null;
  /** The WAL position the server reported with the acknowledgement, for ok writes (asynchronous-mode checks). */
  lsn?: number | null;
  error?: string;
}

/** Who held the leader key from `from` until `to` (the next change, or Infinity); holder null: nobody. */
export interface LeaderSpan {
  holder: string | null;
  from: number;
  to: number;
}

/** One injected fault and the window over which its effect is judged. */
export interface FaultWindow {
  round: number;
  kind: string;
  target: string;
  /** When the fault was injected. */
  at: number;
  /** When the round ended (the cluster was healthy again and the next round could start). */
  until: number;
  /** pg_rewind runs and re-clones the agents counted during the round (rejoins.ts); none when not scraped. */
  rejoins?: RejoinCounts;
}

/** A promotion from `history`: where the new timeline forked off (the end of what the new primary had). */
export interface Promotion {
  timeline: number;
  lsn: number;
  leader: string;
}

export interface FinalState {
  /** Every id in the final primary's table, one entry per row (duplicates stay duplicates). */
  ids: number[];
}

export interface CheckOptions {
  synchronous: boolean;
  /** maximum_lag_on_failover, bytes: the bound for writes lost in asynchronous mode. */
  maximumLagOnFailover: number;
  /**
   * The leader key as the harness saw it lags the real key by the watch latency: a write is only held against a
   * span when it was sent and answered entirely inside it, shrunk by this margin on both ends (no false alarms).
   */
  watchMarginMs?: number;
}

export interface DualPrimaryWindow {
  /** The member that acknowledged a write. */
  server: string;
  /** The member holding the leader key meanwhile (null: nobody held it). */
  holder: string | null;
  id: number;
  sentAt: number;
  doneAt: number;
}

/** What the clients and the members went through in one round (or, summed, in every round of one fault kind). */
interface FaultCounts extends RejoinCounts {
  /** Writes through the proxies that failed (or got no answer). */
  failedWrites: number;
  lost: number;
  dualPrimary: number;
}

export interface FaultOutcome extends FaultCounts {
  round: number;
  kind: string;
  target: string;
  /** The longest stretch without an acknowledged write through a proxy, around the fault; null: no proxy writes. */
  recoveryMs: number | null;
}

export interface FaultRow extends FaultCounts {
  fault: string;
  rounds: number;
  recoveryMedianMs: number | null;
  recoveryP95Ms: number | null;
  recoveryMaxMs: number | null;
}

export interface CheckReport {
  acknowledged: number;
  lost: number[];
  /** Asynchronous mode: lost writes beyond maximum_lag_on_failover of a promotion point. */
  lostBeyondLagLimit: number[];
  dualPrimary: DualPrimaryWindow[];
  duplicates: number[];
  phantoms: number[];
  faults: FaultOutcome[];
  ok: boolean;
  problems: string[];
}

export function check(writes: readonly WriteOp[], leaders: readonly LeaderSpan[], faults: readonly FaultWindow[], final: FinalState, promotions: readonly Promotion[], options: CheckOptions): CheckReport {
  const margin = options.watchMarginMs ?? 50;
  const present = new Map<number, number>();
  for (const id of final.ids) present.set(id, (present.get(id) ?? 0) + 1);
  const attempted = new Set(writes.map((w) => w.id));
  const acked = writes.filter((w) => w.outcome === 'ok');

  const lostOps = acked.filter((w) => !present.has(w.id));
  const lost = lostOps.map((w) => w.id);
  const lostBeyondLagLimit = options.synchronous ? [] : lostOps.filter((w) => !withinLagLimit(w, promotions, options.maximumLagOnFailover)).map((w) => w.id);
  const duplicates = [...present].filter(([, n]) => n > 1).map(([id]) => id).sort((a, b) => a - b);
  const phantoms = [...present.keys()].filter((id) => !attempted.has(id)).sort((a, b) => a - b);
  // A write that failed for sure must not be there either: a "failed" answer for a committed write is a lie the
  // client would act on (it would retry and duplicate).
  const failedButPresent = writes.filter((w) => w.outcome === 'failed' && present.has(w.id)).map((w) => w.id);

  const dualPrimary: DualPrimaryWindow[] = [];
  for (const w of acked) {
    if (w.server === null || w.doneAt === null) continue;
    const span = spanCovering(leaders, w.sentAt - margin, w.doneAt + margin);
    if (span !== null && span.holder !== w.server) {
      dualPrimary.push({ server: w.server, holder: span.holder, id: w.id, sentAt: w.sentAt, doneAt: w.doneAt });
    }
  }

  const lostSet = new Set(lost);
  const dualIds = new Set(dualPrimary.map((d) => d.id));
  const faultOutcomes = faults.map((f): FaultOutcome => {
    const inRound = writes.filter((w) => w.sentAt >= f.at && w.sentAt < f.until);
    const viaProxy = inRound.filter((w) => w.via !== 'direct');
    return {
      round: f.round,
      kind: f.kind,
      target: f.target,
      recoveryMs: unavailability(writes.filter((w) => w.via !== 'direct'), f.at, f.until),
      failedWrites: viaProxy.filter((w) => w.outcome !== 'ok').length,
      lost: inRound.filter((w) => lostSet.has(w.id)).length,
      dualPrimary: inRound.filter((w) => dualIds.has(w.id)).length,
      ...(f.rejoins ?? NO_REJOINS),
    };
  });

  const problems: string[] = [];
  if (options.synchronous && lost.length > 0) problems.push(`${lost.length} acknowledged writes lost (synchronous mode): ids ${preview(lost)}`);
  if (lostBeyondLagLimit.length > 0) problems.push(`${lostBeyondLagLimit.length} lost writes lie beyond maximum_lag_on_failover of the promotion: ids ${preview(lostBeyondLagLimit)}`);
  for (const d of dualPrimary.slice(0, 5)) {
    problems.push(`write ${d.id} acknowledged by ${d.server} between ${d.sentAt.toFixed(0)} and ${d.doneAt.toFixed(0)} ms while ${d.holder ?? 'nobody'} held the leader key`);
  }
  if (dualPrimary.length > 5) problems.push(`… and ${dualPrimary.length - 5} more writes acknowledged by a server without the leader key`);
  if (duplicates.length > 0) problems.push(`${duplicates.length} ids appear more than once: ${preview(duplicates)}`);
  if (phantoms.length > 0) problems.push(`${phantoms.length} rows no client wrote: ids ${preview(phantoms)}`);
  for (const f of faultOutcomes.filter((o) => o.reclones > 0)) {
    problems.push(`round ${f.round} (${f.kind} on ${f.target}): ${f.reclones} re-clone${f.reclones > 1 ? 's' : ''} where pg_rewind must be enough (${f.rewinds} rewinds, ${f.rewindFailures} failed)`);
  }
  if (failedButPresent.length > 0) problems.push(`${failedButPresent.length} writes reported as failed are present: ids ${preview(failedButPresent)}`);
  return { acknowledged: acked.length, lost, lostBeyondLagLimit, dualPrimary, duplicates, phantoms, faults: faultOutcomes, ok: problems.length === 0, problems };
}

/** The leader span containing all of [from, to], or null when the key changed hands (or is unknown) inside it. */
function spanCovering(leaders: readonly LeaderSpan[], from: number, to: number): LeaderSpan | null {
  for (const s of leaders) if (s.from <= from && to <= s.to) return s;
  return null;
}

/**
 * A lost asynchronous write is within the promise when it came after the fork point of a promotion by at most
 * maximum_lag_on_failover bytes: the promoted replica was allowed to lack exactly that much.
 */
function withinLagLimit(w: WriteOp, promotions: readonly Promotion[], limit: number): boolean {
  if (w.lsn === undefined || w.lsn === null) return false;
  return promotions.some((p) => w.lsn! >= p.lsn && w.lsn! - p.lsn <= limit);
}

/**
 * The longest time without an acknowledged write, from the last acknowledgement before `at` on, up to `until`
 * (a round that ends unavailable counts to its end).
 */
export function unavailability(writes: readonly WriteOp[], at: number, until: number): number | null {
  const acks = writes.filter((w) => w.outcome === 'ok' && w.doneAt !== null).map((w) => w.doneAt!).sort((a, b) => a - b);
  if (acks.length === 0) return null;
  let prev: number | null = null;
  for (const t of acks) if (t <= at) prev = t;
  let start = prev ?? at;
  let longest = 0;
  for (const t of acks) {
    if (t <= at) continue;
    if (t > until) break;
    longest = Math.max(longest, t - start);
    start = t;
  }
  return Math.max(longest, until - start);
}

/** Leader spans from the (time, holder) changes an etcd watch observed, in order. */
export function leaderSpans(changes: ReadonlyArray<{ at: number; holder: string | null }>, end = Infinity): LeaderSpan[] {
  const spans: LeaderSpan[] = [];
  for (let i = 0; i < changes.length; i++) {
    const c = changes[i]!;
    spans.push({ holder: c.holder, from: c.at, to: i + 1 < changes.length ? changes[i + 1]!.at : end });
  }
  return spans;
}

function preview(ids: readonly number[]): string {
  return ids.length <= 10 ? ids.join(', ') : `${ids.slice(0, 10).join(', ')} …`;
}

/** Median, p95 and max of a list (null entries ignored); nulls when empty. */
export function summarize(values: ReadonlyArray<number | null>): { median: number | null; p95: number | null; max: number | null } {
  const xs = values.filter((v): v is number => v !== null).sort((a, b) => a - b);
  if (xs.length === 0) return { median: null, p95: null, max: null };
  const at = (q: number): number => xs[Math.min(xs.length - 1, Math.ceil(q * xs.length) - 1)]!;
  const mid = Math.floor(xs.length / 2);
  return { median: xs.length % 2 ? xs[mid]! : (xs[mid - 1]! + xs[mid]!) / 2, p95: at(0.95), max: xs[xs.length - 1]! };
}

/** The chaos table: fault × rounds × recovery median / p95 / max × failed writes × lost × dual-primary windows × rejoins. */
export function faultTable(report: CheckReport): FaultRow[] {
  const byKind = new Map<string, FaultOutcome[]>();
  for (const f of report.faults) byKind.set(f.kind, [...(byKind.get(f.kind) ?? []), f]);
  return [...byKind].map(([fault, list]) => {
    const s = summarize(list.map((f) => f.recoveryMs));
    return {
      fault,
      rounds: list.length,
      recoveryMedianMs: s.median,
      recoveryP95Ms: s.p95,
      recoveryMaxMs: s.max,
      failedWrites: list.reduce((n, f) => n + f.failedWrites, 0),
      lost: list.reduce((n, f) => n + f.lost, 0),
      dualPrimary: list.reduce((n, f) => n + f.dualPrimary, 0),
      rewinds: list.reduce((n, f) => n + f.rewinds, 0),
      rewindFailures: list.reduce((n, f) => n + f.rewindFailures, 0),
      reclones: list.reduce((n, f) => n + f.reclones, 0),
    };
  });
}

/** What a reader on a ro port saw (workload.ts ReadOp, without the client's connection details). */
export interface ReadRecord {
  client: string;
  at: number;
  ok: boolean;
  maxId: number | null;
}

/**
 * Reads that show an id before any client sent it (`at` is when the read's answer arrived) (a replica inventing rows, or a read served by something that
 * is not the cluster). Returns one line per offending read.
 */
export function impossibleReads(reads: readonly ReadRecord[], writes: readonly WriteOp[]): string[] {
  const sentAt = new Map(writes.map((w) => [w.id, w.sentAt]));
  const out: string[] = [];
  for (const r of reads) {
    if (!r.ok || r.maxId === null) continue;
    const sent = sentAt.get(r.maxId);
    if (sent === undefined || sent > r.at) out.push(`${r.client} saw id ${r.maxId} at ${r.at.toFixed(0)} ms, ${sent === undefined ? 'which no client wrote' : `sent only at ${sent.toFixed(0)} ms`}`);
  }
  return out;
}
