/**
 * "Did you mean …?" for mistyped keys and command names. Pure, no dependencies, shared with the CLI.
 */

/** Levenshtein edit distance (insertions, deletions, substitutions each cost 1). */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  if (a.length === 0) return b.length;
  if (b.length === 0) return a.length;
  let previous = new Array<number>(b.length + 1);
  let current = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) previous[j] = j;
  for (let i = 1; i <= a.length; i++) {
    current[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1] + (a.charCodeAt(i - 1) === b.charCodeAt(j - 1) ? 0 : 1);
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, substitution);
    }
    [previous, current] = [current, previous];
  }
  return previous[b.length];
}

/**
 * The candidate closest to `word` (case-insensitive), or null when none is close enough to be a plausible typo.
 * A suggestion far from the input only confuses, so the allowed distance grows with the word: at most 1 edit for
 * words up to 3 characters, then about a third of the length (at least 2), and never the whole word. Ties go to
 * the earlier candidate.
 */
export function closest(word: string, candidates: readonly string[]): string | null {
  const needle = word.toLowerCase();
  const limit = needle.length <= 3 ? 1 : Math.max(2, Math.floor(needle.length / 3));
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(needle, candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  // Replacing every character is no typo ("x" is not a misspelt "a").
  return bestDistance <= limit && bestDistance < needle.length ? best : null;
}

/** " Did you mean \"x\"?" or "" — ready to append to an error message. */
export function didYouMean(word: string, candidates: readonly string[]): string {
  const match = closest(word, candidates);
  return match === null ? '' : ` Did you mean "${match}"?`;
}
