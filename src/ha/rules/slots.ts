/** Replication slots on the primary. */
import { slotNameFor } from '../slots.js';
import type { Action } from '../types.js';
import type { RuleInput } from './input.js';

/** A slot for every member, kept while the member has been seen within member_slots_ttl: the action, if any. */
export function slotSteps(input: RuleInput): Action[] {
  const { view, obs, config, clock } = input;
  const pg = obs.pg;
  const wanted = new Set<string>();
  for (const name of Object.keys(view.members)) if (name !== obs.me) wanted.add(slotNameFor(name));
  const ttlMs = config.member_slots_ttl * 1000;
  for (const [name, seenAt] of Object.entries(obs.memory.memberLastSeen)) {
    if (name !== obs.me && clock.wall - seenAt < ttlMs) wanted.add(slotNameFor(name));
  }
  const create = [...wanted].filter((s) => !pg.slots.includes(s)).sort();
  const drop = pg.slots.filter((s) => !wanted.has(s)).sort();
  return create.length || drop.length ? [{ type: 'manageSlots', create, drop }] : [];
}
