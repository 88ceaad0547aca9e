/**
 * SCRAM-SHA-256 key derivation (RFC 5802, RFC 7677) and SASLprep (RFC 4013), as PostgreSQL computes them: the one
 * copy that both the agent (role passwords written as verifiers) and the proxy (SCRAM exchanges) use, so that a
 * verifier pgwarden writes and a proof the proxy computes always agree with PostgreSQL and libpq. No I/O.
 */
import { createHash, createHmac, pbkdf2, pbkdf2Sync, randomBytes } from 'node:crypto';
import { L_CAT, MAPPED_TO_NOTHING, NON_ASCII_SPACE, PROHIBITED, RAND_AL_CAT, UNASSIGNED } from './stringprep-tables.js';

export const SCRAM_SHA_256 = 'SCRAM-SHA-256';
/** PostgreSQL's default scram_iterations. */
export const SCRAM_DEFAULT_ITERATIONS = 4096;
/** PostgreSQL's SCRAM_DEFAULT_SALT_LEN. */
const SALT_BYTES = 16;
export const SCRAM_KEY_BYTES = 32;

/** What PostgreSQL stores for a SCRAM password (pg_authid.rolpassword), decoded. */
export interface ScramSecret {
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

/** What a client needs to prove itself: the password's derived keys for one salt and iteration count. */
export interface ScramKeys {
  iterations: number;
  salt: Buffer;
  clientKey: Buffer;
  serverKey: Buffer;
}

/** Whether `code` lies in one of the table's inclusive [first, last] ranges (binary search). */
function inTable(code: number, table: readonly number[]): boolean {
  let lo = 0;
  let hi = table.length / 2 - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (code < table[2 * mid]) hi = mid - 1;
    else if (code > table[2 * mid + 1]) lo = mid + 1;
    else return true;
  }
  return false;
}

/**
 * SASLprep of a password as PostgreSQL's pg_saslprep (the server's and libpq's) applies it: an ASCII password
 * unchanged; otherwise map (non-ASCII spaces to SPACE, "commonly mapped to nothing" removed), then NFKC. Where
 * that preparation fails (nothing left, a prohibited or Unicode-3.2-unassigned character, or RFC 3454 §6 bidi
 * rules broken), PostgreSQL and libpq both fall back to the raw password, and so does this, or logins would fail.
 */
export function saslPrep(password: string): string {
  if (/^[\x00-\x7F]*$/.test(password)) return password;
  const mapped: number[] = [];
  for (const char of password) {
    const code = char.codePointAt(0)!;
    if (inTable(code, NON_ASCII_SPACE)) mapped.push(0x20);
    else if (!inTable(code, MAPPED_TO_NOTHING)) mapped.push(code);
  }
  if (mapped.length === 0) return password;
  // The checks look at the mapped characters, before normalisation, exactly as pg_saslprep does.
  if (mapped.some((code) => inTable(code, PROHIBITED) || inTable(code, UNASSIGNED))) return password;
  if (mapped.some((code) => inTable(code, RAND_AL_CAT))) {
    const bidiOk =
      !mapped.some((code) => inTable(code, L_CAT)) && inTable(mapped[0], RAND_AL_CAT) && inTable(mapped[mapped.length - 1], RAND_AL_CAT);
    if (!bidiOk) return password;
  }
  return String.fromCodePoint(...mapped).normalize('NFKC');
}

function passwordBytes(password: string): Buffer {
  return Buffer.from(saslPrep(password), 'utf8');
}

function hmac(key: Buffer, text: string): Buffer {
  return createHmac('sha256', key).update(text).digest();
}

function keysFromSaltedPassword(salted: Buffer, salt: Buffer, iterations: number): ScramKeys {
  return { iterations, salt, clientKey: hmac(salted, 'Client Key'), serverKey: hmac(salted, 'Server Key') };
}

/** SaltedPassword → ClientKey, ServerKey. PBKDF2 on the calling thread (about 2 ms for 4096 iterations). */
export function deriveScramKeys(password: string, salt: Buffer, iterations: number): ScramKeys {
  return keysFromSaltedPassword(pbkdf2Sync(passwordBytes(password), salt, iterations, SCRAM_KEY_BYTES, 'sha256'), salt, iterations);
}

/** deriveScramKeys with PBKDF2 on libuv's thread pool, so a burst of logins does not stall an event loop. */
export function deriveScramKeysAsync(password: string, salt: Buffer, iterations: number): Promise<ScramKeys> {
  return new Promise((resolve, reject) => {
    pbkdf2(passwordBytes(password), salt, iterations, SCRAM_KEY_BYTES, 'sha256', (error, salted) => {
      if (error) reject(error);
      else resolve(keysFromSaltedPassword(salted, salt, iterations));
    });
  });
}

/** StoredKey = H(ClientKey). */
export function storedKeyOf(clientKey: Buffer): Buffer {
  return createHash('sha256').update(clientKey).digest();
}

/** The secret PostgreSQL would store for `password` (same derivation as CREATE ROLE ... PASSWORD). */
export function scramSecretFromPassword(password: string, salt: Buffer = randomBytes(SALT_BYTES), iterations = SCRAM_DEFAULT_ITERATIONS): ScramSecret {
  const keys = deriveScramKeys(password, salt, iterations);
  return { iterations, salt, storedKey: storedKeyOf(keys.clientKey), serverKey: keys.serverKey };
}

/** The text form of a secret, as stored in pg_authid: "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>". */
export function formatScramSecret(secret: ScramSecret): string {
  return `${SCRAM_SHA_256}$${secret.iterations}:${secret.salt.toString('base64')}$${secret.storedKey.toString('base64')}:${secret.serverKey.toString('base64')}`;
}

/**
 * The verifier PostgreSQL stores for a password. Sending it in CREATE/ALTER ROLE ... PASSWORD keeps the password
 * itself out of the server's statement log, as psql's \password does.
 */
export function scramSha256Verifier(password: string, salt: Buffer = randomBytes(SALT_BYTES), iterations = SCRAM_DEFAULT_ITERATIONS): string {
  return formatScramSecret(scramSecretFromPassword(password, salt, iterations));
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict base64 (what PostgreSQL's pg_b64_decode accepts); null otherwise. */
export function decodeBase64(text: string): Buffer | null {
  return BASE64.test(text) ? Buffer.from(text, 'base64') : null;
}

/** Parses "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>"; null if `text` is not such a secret. */
export function parseScramSecret(text: string): ScramSecret | null {
  const match = /^SCRAM-SHA-256\$(\d{1,10}):([^$:]+)\$([^$:]+):([^$:]+)$/.exec(text);
  if (match === null) return null;
  const iterations = Number(match[1]);
  const salt = decodeBase64(match[2]);
  const storedKey = decodeBase64(match[3]);
  const serverKey = decodeBase64(match[4]);
  if (iterations < 1 || iterations > 0x7fffffff || salt === null || salt.length === 0) return null;
  if (storedKey === null || storedKey.length !== SCRAM_KEY_BYTES || serverKey === null || serverKey.length !== SCRAM_KEY_BYTES) return null;
  return { iterations, salt, storedKey, serverKey };
}
