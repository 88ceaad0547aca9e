/**
 * How bench:proxy orders its pgbench runs within a round and turns them into one figure per target and round.
 *
 * On this kind of shared machine two pgbench runs of the same target one after the other differ by 10–20%, and
 * that noise moves within seconds: a ratio of two single runs is mostly noise. So each pooler runs twice per
 * round, in mirrored order (A B C C B A, an ABBA design): a drift of the machine's speed during the round weighs
 * on every pooler alike, and each one's figure for the round is the mean of its two runs.
 */

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new RangeError('median of no values');
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * The runs of one round (1-based) as target names: the unpooled targets once first, then the poolers in order
 * and again in reverse. The poolers' order also turns with each round, so that none always runs first or last.
 */
export function roundOrder<T>(unpooled: readonly T[], poolers: readonly T[], round: number): T[] {
  const n = poolers.length;
  const turned = poolers.map((_, i) => poolers[(i + round - 1) % n]!);
  return [...unpooled, ...turned, ...[...turned].reverse()];
}

/**
 * One figure from several runs of a target in one round: the mean of each numeric field, except that a field
 * null in any run stays null (a direct run has no pooler CPU) and the transaction counts add up.
 */
export function meanOfRuns<R extends { transactions: number }>(runs: readonly R[]): R {
  if (runs.length === 0) throw new RangeError('no runs to combine');
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(runs[0]!)) {
    const values = runs.map((r) => (r as Record<string, unknown>)[key]);
    if (values.some((v) => v === null)) out[key] = null;
    else if (key === 'transactions') out[key] = (values as number[]).reduce((a, b) => a + b, 0);
    else out[key] = (values as number[]).reduce((a, b) => a + b, 0) / values.length;
  }
  return out as R;
}
