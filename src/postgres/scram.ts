import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';

/**
 * The SCRAM-SHA-256 verifier PostgreSQL stores for a password ("SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>",
 * RFC 5802/7677). Sending the verifier in CREATE/ALTER ROLE ... PASSWORD keeps the password itself out of the
 * server's statement log, as psql's \password does. SASLprep is approximated by NFKC normalisation, which is
 * exact for ASCII passwords and for the usual non-ASCII ones.
 */
export function scramSha256Verifier(password: string, salt: Buffer = randomBytes(16), iterations = 4096): string {
  const salted = pbkdf2Sync(Buffer.from(password.normalize('NFKC'), 'utf8'), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}
