/**
 * docs/ha.md "Switchover without errors": before shutting down for a handover, the primary asks the live proxies
 * to finish the transactions in flight and hold new ones, and waits for each one's acknowledgement, at most
 * `drain_timeout`.
 */
import type { ClusterView, FailoverIntent } from '../../cluster/types.js';
import { decision, keepKey, type LeaderOutcome, type RuleInput } from './input.js';

/** Names the drain that belongs to one switchover request, so a later request gets a fresh one. */
export function drainIdFor(intent: FailoverIntent): string {
  return `${intent.kind}:${intent.requestedAt}:${intent.to ?? '*'}`;
}

/** The live proxies that can reach this server: a proxy that cannot has nothing in flight here to finish. */
export function proxiesReachingMe(input: RuleInput): ClusterView['proxies'] {
  return input.view.proxies.filter((p) => p.unreachable[input.obs.me] === undefined);
}

/** The handover may go on: how the drain ended, and the start of the handover's reason that says so. */
export interface DrainSettled {
  proceed: { drain: 'none' | 'drained' | 'timed-out'; prefix: string };
}

/**
 * Where the drain before handing over to `target` stands: ask for it now (a decision), wait for missing
 * acknowledgements (a note: the primary keeps doing its job meanwhile), or go on (no proxies, all drained,
 * or the timeout passed).
 */
export function drainBeforeHandover(input: RuleInput, intent: FailoverIntent, target: string): LeaderOutcome | DrainSettled {
  const { view, obs, config, clock } = input;
  const proxies = proxiesReachingMe(input);
  const timeoutMs = config.drain_timeout * 1000;
  if (proxies.length === 0 || timeoutMs <= 0) return { proceed: { drain: 'none', prefix: '' } };
  const drain = view.drain;
  const id = drainIdFor(intent);
  if (drain === null || drain.id !== id || drain.from !== obs.me) {
    const n = proxies.length;
    return {
      decision: decision(
        'drain.request',
        [keepKey(input), { type: 'requestDrain', drain: { id, from: obs.me, to: target, requestedAt: clock.wall, timeoutMs } }],
        `${intent.kind}: asked ${n} ${n === 1 ? 'proxy' : 'proxies'} to drain before handing over to ${target}`,
        'primary',
        'running',
      ),
    };
  }
  const pending = proxies.filter((p) => p.drained !== id).map((p) => p.id);
  if (pending.length === 0) {
    return { proceed: { drain: 'drained', prefix: `${proxies.length} ${proxies.length === 1 ? 'proxy' : 'proxies'} drained; ` } };
  }
  const waited = clock.wall - drain.requestedAt;
  if (waited < drain.timeoutMs) {
    const left = Math.ceil((drain.timeoutMs - waited) / 1000);
    return {
      note: {
        rule: 'drain.wait',
        text: `${intent.kind} to ${target} waiting for ${pending.length === 1 ? 'proxy' : 'proxies'} ${pending.join(', ')} to drain (${left} s left)`,
        keepsDrain: true,
      },
    };
  }
  return { proceed: { drain: 'timed-out', prefix: `drain timed out for ${pending.join(', ')} after ${config.drain_timeout} s; ` } };
}
