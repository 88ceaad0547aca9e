/**
 * What the proxy can prove to PostgreSQL as a user, from what it knows about that user: a plain password works
 * for every method, an md5 secret only for md5, a SCRAM secret not at all by itself (only the keys a client
 * revealed in its own SCRAM exchange with the proxy work, pass-through as PgBouncer does).
 */
import { isMd5Secret } from './md5.js';
import type { ScramKeys } from '../../protocol/scram.js';
import type { ServerCredentials } from '../pool/server-conn.js';

export function serverCredentials(secret: string | null, scramKeys: ScramKeys | null): ServerCredentials {
  const credentials: ServerCredentials = {};
  if (scramKeys !== null) credentials.scramKeys = scramKeys;
  if (secret === null || secret.startsWith('SCRAM-SHA-256$')) return credentials;
  if (isMd5Secret(secret)) credentials.md5Secret = secret;
  else credentials.password = secret;
  return credentials;
}
