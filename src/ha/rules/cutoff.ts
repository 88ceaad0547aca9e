/**
 * A partition between this primary and the proxies only: etcd and the replicas see a healthy primary, so no
 * failover would ever happen while every client waits.
 */
import { ranksAbove } from '../../cluster/predicates.js';
import type { MemberStatus } from '../../cluster/types.js';
import { candidateCheck } from './candidates.js';
import { decision, keepKey, type LeaderOutcome, type RuleInput } from './input.js';

/**
 * When every live proxy has reported this server unreachable for proxy_unreachable_timeout, and a replica that
 * could take over cleanly (candidateCheck) is reachable to all of them, the primary asks for a switchover to it:
 * the usual handover, so no acknowledged write is lost. One proxy that still reaches this server, or none that
 * reaches the candidate (a proxy cut from everything), keeps things as they are. The proxies date their reports
 * with their own wall clocks: skew between hosts only shifts when the timeout is reached. Null when no proxy
 * reports anything (or the timeout is off).
 */
export function cutOffRule(input: RuleInput): LeaderOutcome | null {
  const { view, obs, config, clock } = input;
  const proxies = view.proxies;
  const timeoutMs = config.proxy_unreachable_timeout * 1000;
  if (timeoutMs <= 0 || proxies.length === 0) return null;
  let cutForMs = Infinity;
  for (const p of proxies) {
    const since = p.unreachable[obs.me];
    if (since === undefined) return null;
    cutForMs = Math.min(cutForMs, clock.wall - since);
  }
  if (cutForMs < timeoutMs) {
    const text = `every live proxy reports this server unreachable (${(cutForMs / 1000).toFixed(1)} s of ${config.proxy_unreachable_timeout} s)`;
    return { note: { rule: 'cutoff.wait', text, keepsDrain: false } };
  }
  let best: MemberStatus | null = null;
  for (const m of Object.values(view.members)) {
    if (m.name === obs.me || proxies.some((p) => p.unreachable[m.name] !== undefined)) continue;
    if ('refusal' in candidateCheck(input, m.name, true)) continue;
    if (ranksAbove(m, best)) best = m;
  }
  if (best === null) {
    const text = 'every live proxy reports this server unreachable, but no replica they all reach could take over';
    return { note: { rule: 'cutoff.no-candidate', text, keepsDrain: false } };
  }
  const n = proxies.length;
  return {
    decision: decision(
      'cutoff.request-switchover',
      [keepKey(input), { type: 'requestSwitchover', intent: { kind: 'switchover', from: obs.me, to: best.name, at: null, requestedAt: clock.wall } }],
      `${n === 1 ? 'the only live proxy has' : `all ${n} live proxies have`} reported this server unreachable for ${(cutForMs / 1000).toFixed(1)} s while ${best.name} is reachable to ${n === 1 ? 'it' : 'them'}: asking for a switchover to ${best.name}`,
      'primary',
      'running',
    ),
  };
}
