/**
 * PostgreSQL's md5 password authentication, both sides. The stored form is "md5" + md5(password + user); on the
 * wire the client answers AuthenticationMD5Password(salt) with "md5" + md5(md5(password + user) + salt).
 * Weak (a stolen stored hash is as good as the password, and it is replayable per salt): kept only for servers
 * and clients that still use it; SCRAM is the default everywhere.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { passwordAuthenticationFailed } from '../protocol/errors.js';

const MD5_SECRET = /^md5[0-9a-f]{32}$/;

function md5Hex(...parts: (string | Buffer)[]): string {
  const hash = createHash('md5');
  for (const part of parts) hash.update(part);
  return hash.digest('hex');
}

/** True for a stored md5 secret ("md5" + 32 lowercase hex digits). */
export function isMd5Secret(secret: string): boolean {
  return MD5_SECRET.test(secret);
}

/** The secret PostgreSQL stores for `password` under password_encryption = md5. */
export function md5Secret(password: string, user: string): string {
  return `md5${md5Hex(password, user)}`;
}

/** Four random bytes for AuthenticationMD5Password. */
export function md5Salt(): Buffer {
  return randomBytes(4);
}

/**
 * The PasswordMessage a client sends for AuthenticationMD5Password(salt). `secret` is the password or its stored
 * md5 form (a proxy holding only md5 secrets can still log in to a server that asks for md5).
 */
export function md5PasswordResponse(secret: string, user: string, salt: Uint8Array): string {
  const inner = isMd5Secret(secret) ? secret.slice(3) : md5Hex(secret, user);
  return `md5${md5Hex(inner, Buffer.from(salt))}`;
}

/**
 * Checks a client's PasswordMessage against the stored secret (md5 form or a plain password). Throws 28P01
 * 'password authentication failed for user "<user>"' on a mismatch, a missing secret (null) or a secret md5
 * cannot check (SCRAM: PostgreSQL then runs SCRAM instead of md5, which is the caller's choice to make).
 */
export function verifyMd5Response(options: { user: string; secret: string | null; salt: Uint8Array; response: string }): void {
  const { user, secret, salt, response } = options;
  if (secret === null || secret.startsWith('SCRAM-SHA-256$')) throw passwordAuthenticationFailed(user);
  const expected = Buffer.from(md5PasswordResponse(secret, user, salt), 'latin1');
  const actual = Buffer.from(response, 'latin1');
  if (actual.length !== expected.length || !timingSafeEqual(actual, expected)) throw passwordAuthenticationFailed(user);
}
