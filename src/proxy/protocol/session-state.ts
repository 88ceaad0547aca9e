/**
 * What a client's SQL text does to session-level state, as far as transaction pooling cares (pure logic).
 *
 * In transaction mode a server connection is shared: state a statement leaves behind after its transaction
 * (session advisory locks, LISTEN, plain SET, WITH HOLD cursors, temporary tables, SQL PREPARE) would leak to
 * the next client. The proxy pins such a client to its server connection instead. Whether a statement created
 * such state is learnt from the server's CommandComplete tags where a tag says it (SET, RESET, LISTEN, PREPARE,
 * DECLARE CURSOR, see `sessionTagOf`); what no tag says (advisory lock calls inside a SELECT, SET LOCAL versus
 * SET, UNLISTEN * versus UNLISTEN name, CREATE TEMP) comes from a cheap scan of the Query/Parse text here.
 *
 * The scan reads bytes in place (no string, no allocation) because it runs for every Query and Parse. It only
 * looks at the leading keyword and at `advisory_` function names (any letter case), so it can be fooled by
 * text in comments or string literals; every such mistake errs towards pinning, except the ones listed at
 * `advisoryEffect`.
 */

/** Bits of `leadingEffects`. */
export const enum SqlEffect {
  /** SET LOCAL / TRANSACTION / CONSTRAINTS … or RESET ALL, alone in the text: its SET/RESET tag leaves nothing to pin for. */
  ExemptSet = 1,
  /** UNLISTEN *: the client stops listening on every channel. */
  UnlistenAll = 2,
  /** RESET ALL: settings go back to the server connection's defaults. */
  ResetAll = 4,
  /** DISCARD ALL: every kind of session state is gone. */
  DiscardAll = 8,
  /** DECLARE … WITH HOLD: the cursor outlives its transaction. */
  HoldCursor = 16,
  /** CREATE TEMP/TEMPORARY/LOCAL TEMP/GLOBAL TEMP …: the table lives as long as the session. */
  TempTable = 32,
  /**
   * SET [SESSION] or RESET of a parameter the server reports (ParameterStatus, see FOLLOWED_PARAMETERS), alone in
   * the text: the proxy follows its value and applies it wherever the client goes, as with startup parameters.
   */
  FollowedSet = 64,
  /** Any other SET or RESET: its tag pins the client whatever else the same batch did. */
  PinningSet = 128,
}

/**
 * Parameters the server reports with ParameterStatus whenever they change, and that a client may set: the proxy
 * keeps the value the client last saw and applies it on every server connection the client gets, instead of
 * pinning the client (PgBouncer does the same for these). `is_superuser`, `session_authorization` and the like
 * change with SET ROLE, which pins.
 */
export const FOLLOWED_PARAMETERS: ReadonlySet<string> = new Set([
  'application_name',
  'client_encoding',
  'DateStyle',
  'IntervalStyle',
  'TimeZone',
  'standard_conforming_strings',
]);

/** How the followed parameters are written in SET/RESET (lower case; TIME ZONE and NAMES are SET's own spellings). */
const FOLLOWED_NAMES = ['application_name', 'client_encoding', 'datestyle', 'intervalstyle', 'timezone', 'standard_conforming_strings'];

/** Bits of `sessionTagOf` (and of ServerConn.sessionTags). */
export const enum SessionTag {
  /** SET or RESET (SET LOCAL too: the tag cannot tell). */
  Set = 1,
  Listen = 2,
  Prepare = 4,
  DeclareCursor = 8,
  /** DEALLOCATE ALL or DISCARD ALL: every prepared statement of the connection is gone, protocol-level ones too. */
  DeallocateAll = 16,
}

/** `advisoryEffect` result meaning pg_advisory_unlock_all() was called. */
export const ADVISORY_UNLOCK_ALL = -0x40000000;

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x0c;
}

function isIdentChar(c: number): boolean {
  const l = c | 0x20;
  return (l >= 0x61 && l <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x5f || c === 0x24 || c >= 0x80;
}

/** ASCII lower case of a byte (only letters change: `| 0x20` alone would turn '_' into DEL). */
function lower(c: number): number {
  return c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
}

/** True when buf[i, …) is `word` (lower-case ASCII) in any letter case, followed by a non-identifier byte or `end`. */
function wordAt(buf: Uint8Array, i: number, end: number, word: string): boolean {
  const n = word.length;
  if (i + n > end) return false;
  for (let k = 0; k < n; k++) if (lower(buf[i + k]) !== word.charCodeAt(k)) return false;
  return i + n === end || !isIdentChar(buf[i + n]);
}

function skipSpace(buf: Uint8Array, i: number, end: number): number {
  while (i < end && isSpace(buf[i])) i++;
  return i;
}

/** True when nothing but whitespace, semicolons and a trailing NUL follows `i` up to `end`: one statement. */
function restIsEmpty(buf: Uint8Array, i: number, end: number): boolean {
  for (; i < end; i++) {
    const c = buf[i];
    if (c !== 0x3b && c !== 0 && !isSpace(c)) return false;
  }
  return true;
}

/** True when the next `;` (if any) is followed only by whitespace: the text holds one statement. */
function singleStatement(buf: Uint8Array, i: number, end: number): boolean {
  for (; i < end; i++) if (buf[i] === 0x3b) return restIsEmpty(buf, i, end);
  return true;
}

/** True when buf[i, …) names a followed parameter (unquoted; with `setForms`, also SET's TIME ZONE and NAMES). */
function followedNameAt(buf: Uint8Array, i: number, end: number, setForms: boolean): boolean {
  for (const name of FOLLOWED_NAMES) if (wordAt(buf, i, end, name)) return true;
  if (!setForms) return false;
  if (wordAt(buf, i, end, 'names')) return true;
  return wordAt(buf, i, end, 'time') && wordAt(buf, skipSpace(buf, i + 4, end), end, 'zone');
}

/** SqlEffect bits of the SQL text buf[start, end) judged by its leading keywords. */
export function leadingEffects(buf: Uint8Array, start: number, end: number): number {
  let i = skipSpace(buf, start, end);
  if (i >= end) return 0;
  switch (buf[i] | 0x20) {
    case 0x73: // s
      if (wordAt(buf, i, end, 'set')) {
        // Transaction-scoped forms (their tag is SET too); SET SESSION CHARACTERISTICS is not one of them.
        let j = skipSpace(buf, i + 3, end);
        const scoped = wordAt(buf, j, end, 'local') || wordAt(buf, j, end, 'transaction') || wordAt(buf, j, end, 'constraints');
        if (scoped && singleStatement(buf, j, end)) return SqlEffect.ExemptSet;
        if (wordAt(buf, j, end, 'session')) j = skipSpace(buf, j + 7, end);
        if (followedNameAt(buf, j, end, true) && singleStatement(buf, j, end)) return SqlEffect.FollowedSet;
        return SqlEffect.PinningSet;
      }
      return 0;
    case 0x72: // r
      if (wordAt(buf, i, end, 'reset')) {
        const j = skipSpace(buf, i + 5, end);
        if (wordAt(buf, j, end, 'all') && singleStatement(buf, j, end)) return SqlEffect.ExemptSet | SqlEffect.ResetAll;
        if (followedNameAt(buf, j, end, false) && singleStatement(buf, j, end)) return SqlEffect.FollowedSet;
        return SqlEffect.PinningSet;
      }
      return 0;
    case 0x75: // u
      if (wordAt(buf, i, end, 'unlisten')) {
        const j = skipSpace(buf, i + 8, end);
        if (j < end && buf[j] === 0x2a) return SqlEffect.UnlistenAll;
      }
      return 0;
    case 0x64: // d
      if (wordAt(buf, i, end, 'discard')) {
        const j = skipSpace(buf, i + 7, end);
        return wordAt(buf, j, end, 'all') ? SqlEffect.DiscardAll | SqlEffect.ExemptSet : 0;
      }
      if (wordAt(buf, i, end, 'declare')) {
        for (let j = i + 7; j + 4 <= end; j++) {
          if ((buf[j] | 0x20) === 0x68 && wordAt(buf, j, end, 'hold') && !isIdentChar(buf[j - 1])) return SqlEffect.HoldCursor;
        }
      }
      return 0;
    case 0x63: {
      // c
      if (!wordAt(buf, i, end, 'create')) return 0;
      let j = skipSpace(buf, i + 6, end);
      if (wordAt(buf, j, end, 'local') || wordAt(buf, j, end, 'global')) j = skipSpace(buf, j + ((buf[j] | 0x20) === 0x6c ? 5 : 6), end);
      return wordAt(buf, j, end, 'temp') || wordAt(buf, j, end, 'temporary') ? SqlEffect.TempTable : 0;
    }
    default:
      return 0;
  }
}

/**
 * Net change in session-level advisory locks that the calls named in buf[start, end) make: +1 per
 * pg_advisory_lock[_shared] / pg_try_advisory_lock[_shared], -1 per pg_advisory_unlock[_shared], or
 * ADVISORY_UNLOCK_ALL for pg_advisory_unlock_all (transaction-level *_xact_* locks do not count).
 * Known limits: a call that runs once per row, a try that fails or an unlock of a lock not held make the count
 * differ from the locks really held; only the unlock cases can release a pin too early.
 */
export function advisoryEffect(buf: Uint8Array, start: number, end: number): number {
  let delta = 0;
  // "y_" is rare in SQL, so it is the cheap anchor; the 8 bytes before it must spell "advisory".
  for (let i = start + 7; i + 1 < end; i++) {
    if ((buf[i] | 0x20) !== 0x79 || buf[i + 1] !== 0x5f) continue;
    if (!matchesBackwards(buf, i, 'advisory')) continue;
    const s = i + 2;
    const c = s < end ? buf[s] | 0x20 : 0;
    if (c === 0x6c && wordPrefixAt(buf, s, end, 'lock')) delta++;
    else if (c === 0x75 && wordPrefixAt(buf, s, end, 'unlock')) {
      if (wordAt(buf, s, end, 'unlock_all')) return ADVISORY_UNLOCK_ALL;
      delta--;
    }
  }
  return delta;
}

function matchesBackwards(buf: Uint8Array, last: number, word: string): boolean {
  const first = last - word.length + 1;
  for (let k = 0; k < word.length; k++) if (lower(buf[first + k]) !== word.charCodeAt(k)) return false;
  return true;
}

function wordPrefixAt(buf: Uint8Array, i: number, end: number, word: string): boolean {
  if (i + word.length > end) return false;
  for (let k = 0; k < word.length; k++) if (lower(buf[i + k]) !== word.charCodeAt(k)) return false;
  return true;
}

/**
 * SessionTag bit for a CommandComplete body buf[start, end) (the NUL-terminated tag), 0 for the others.
 * Callers check the cheap length bound first: the tags that matter are at most 15 bytes with their NUL.
 */
export function sessionTagOf(buf: Uint8Array, start: number, end: number): number {
  const n = end - start;
  switch (buf[start]) {
    case 0x53: // S
      return n === 4 && buf[start + 1] === 0x45 && buf[start + 2] === 0x54 ? SessionTag.Set : 0;
    case 0x52: // R
      return n === 6 && buf[start + 1] === 0x45 && buf[start + 2] === 0x53 && buf[start + 3] === 0x45 ? SessionTag.Set : 0;
    case 0x4c: // L
      return n === 7 && buf[start + 1] === 0x49 ? SessionTag.Listen : 0;
    case 0x50: // P
      return n === 8 && buf[start + 1] === 0x52 && buf[start + 2] === 0x45 && buf[start + 3] === 0x50 ? SessionTag.Prepare : 0;
    case 0x44: // D
      // DISCARD ALL deallocates too.
      if (n === 12) return buf[start + 1] === 0x49 && buf[start + 8] === 0x41 ? SessionTag.DeallocateAll : 0;
      if (n !== 15 || buf[start + 1] !== 0x45) return 0;
      if (buf[start + 2] === 0x43 && buf[start + 8] === 0x43) return SessionTag.DeclareCursor; // DECLARE CURSOR
      return buf[start + 2] === 0x41 && buf[start + 11] === 0x41 ? SessionTag.DeallocateAll : 0; // DEALLOCATE ALL
    default:
      return 0;
  }
}
