/**
 * SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, both sides:
 * - ScramServerSession authenticates a client against a stored secret (PostgreSQL's verifier format), exactly
 *   as the backend does (auth-scram.c): same messages, same checks, same SQLSTATEs;
 * - ScramClientSession authenticates the proxy to PostgreSQL, with the password or with keys recovered from a
 *   client's successful exchange (pass-through, as PgBouncer does when it only holds verifiers).
 *
 * No channel binding: clients may send the gs2 flags 'n' or 'y'; 'p' (SCRAM-SHA-256-PLUS) is refused because
 * the server never advertises it. Messages are handled as latin1 strings so that every byte, including a
 * non-UTF-8 user name, goes into the AuthMessage exactly as the client sent it.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  SCRAM_DEFAULT_ITERATIONS,
  SCRAM_KEY_BYTES as KEY_BYTES,
  SCRAM_SHA_256,
  type ScramKeys,
  type ScramSecret,
  decodeBase64,
  deriveScramKeys,
  parseScramSecret,
  scramSecretFromPassword,
} from '../../protocol/scram.js';
import { PgProtocolError, SQLSTATE, passwordAuthenticationFailed, protocolViolation } from '../protocol/errors.js';

/** PostgreSQL's SCRAM_RAW_NONCE_LEN: random bytes behind each side's nonce. */
const RAW_NONCE_BYTES = 18;

/** Makes the random part of a nonce: printable ASCII without ','. Injectable so tests can replay RFC vectors. */
export type NonceSource = () => string;

export const randomNonce: NonceSource = () => randomBytes(RAW_NONCE_BYTES).toString('base64');

function hmac(key: Buffer, text: string | Buffer): Buffer {
  return createHmac('sha256', key).update(text).digest();
}

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] ^ b[i];
  return out;
}

/** Printable ASCII except ',' (RFC 5802 "printable"). */
function isPrintableNonce(nonce: string): boolean {
  if (nonce.length === 0) return false;
  for (let i = 0; i < nonce.length; i++) {
    const c = nonce.charCodeAt(i);
    if (c < 0x21 || c > 0x7e || c === 0x2c) return false;
  }
  return true;
}

function freshNonce(source: NonceSource): string {
  const nonce = source();
  if (!isPrintableNonce(nonce)) throw new RangeError('a SCRAM nonce source must return printable ASCII without commas');
  return nonce;
}

function malformed(detail: string): PgProtocolError {
  return protocolViolation('malformed SCRAM message', detail);
}

/** Reads "a=value" attributes off a SCRAM message, the way auth-scram.c's read_attr_value does. */
class AttributeCursor {
  pos = 0;
  constructor(readonly text: string) {}

  atEnd(): boolean {
    return this.pos >= this.text.length;
  }

  peek(): string {
    return this.text[this.pos] ?? '';
  }

  /** The value of the next attribute, which must be `name`. */
  expect(name: string, where: string): string {
    const attr = this.text[this.pos];
    if (attr !== name || this.text[this.pos + 1] !== '=') {
      throw malformed(`Expected attribute "${name}" but found "${this.text.slice(this.pos, this.pos + 10)}" in ${where}.`);
    }
    return this.value();
  }

  /** The next attribute, whatever its name. */
  any(where: string): { name: string; value: string } {
    const name = this.text[this.pos] ?? '';
    if (!/^[A-Za-z]$/.test(name) || this.text[this.pos + 1] !== '=') {
      throw malformed(`Attribute expected, but found invalid character "${name}" in ${where}.`);
    }
    return { name, value: this.value() };
  }

  private value(): string {
    const from = this.pos + 2;
    const comma = this.text.indexOf(',', from);
    const to = comma === -1 ? this.text.length : comma;
    this.pos = comma === -1 ? to : to + 1;
    return this.text.slice(from, to);
  }
}

type ServerState = 'client-first' | 'client-final' | 'succeeded' | 'failed';

export interface ScramServerOptions {
  /** The user name from the startup packet: PostgreSQL ignores SCRAM's own n= and so does this. */
  user: string;
  /**
   * A stored secret ("SCRAM-SHA-256$..."), a parsed one, a plain password (derived here: PBKDF2 per session,
   * so callers should cache scramSecretFromPassword's result instead), or null for an unknown user. An md5
   * secret or a broken SCRAM secret cannot pass SCRAM: like a missing one, the exchange runs with a mock salt
   * and fails at the end with the usual words, so a client cannot tell which users exist.
   */
  secret: string | ScramSecret | null;
  /** Server-wide random bytes that make a mock salt stable per user name (as PostgreSQL's mock salt is). */
  mockSeed?: Buffer;
  nonce?: NonceSource;
}

/**
 * The backend side of one SCRAM exchange:
 *   AuthenticationSASL([SCRAM_SHA_256]) → SASLInitialResponse → handleInitialResponse → AuthenticationSASLContinue
 *   → SASLResponse → handleResponse → AuthenticationSASLFinal → AuthenticationOk.
 * Every failure throws PgProtocolError (08P01 malformed, 0A000 unsupported, 28P01 wrong password) and ends the
 * session; later calls throw too.
 */
export class ScramServerSession {
  readonly mechanisms: readonly string[] = [SCRAM_SHA_256];
  /** Why this session cannot succeed whatever the client sends (for the server log, never for the client). */
  readonly doomedReason: string | null;

  private state: ServerState = 'client-first';
  private readonly user: string;
  private readonly secret: ScramSecret;
  private readonly nonceSource: NonceSource;
  private gs2Header = '';
  private clientFirstBare = '';
  private serverFirst = '';
  private nonce = '';
  private recoveredClientKey: Buffer | null = null;

  constructor(options: ScramServerOptions) {
    this.user = options.user;
    this.nonceSource = options.nonce ?? randomNonce;
    const { secret, reason } = resolveSecret(options.secret);
    this.doomedReason = reason;
    this.secret = secret ?? mockSecret(options.user, options.mockSeed);
  }

  get succeeded(): boolean {
    return this.state === 'succeeded';
  }

  /**
   * After success: the keys the client proved it holds, with which the proxy can log in to PostgreSQL as the
   * same user (ScramClientSession `keys`) without knowing the password, provided the server stores the same secret.
   */
  passThroughKeys(): ScramKeys | null {
    if (this.state !== 'succeeded' || this.recoveredClientKey === null) return null;
    return { iterations: this.secret.iterations, salt: this.secret.salt, clientKey: this.recoveredClientKey, serverKey: this.secret.serverKey };
  }

  /** Takes a decoded SASLInitialResponse; returns the server-first-message for AuthenticationSASLContinue. */
  handleInitialResponse(mechanism: string, data: Buffer | null): Buffer {
    this.enter('client-first');
    try {
      if (mechanism !== SCRAM_SHA_256) {
        throw protocolViolation('client selected an invalid SASL authentication mechanism');
      }
      if (data === null || data.length === 0) throw malformed('The message is empty.');
      this.readClientFirst(data.toString('latin1'));
      this.nonce += freshNonce(this.nonceSource);
      this.serverFirst = `r=${this.nonce},s=${this.secret.salt.toString('base64')},i=${this.secret.iterations}`;
      this.state = 'client-final';
      return Buffer.from(this.serverFirst, 'latin1');
    } catch (e) {
      this.state = 'failed';
      throw e;
    }
  }

  /** Takes a SASLResponse body; returns the server-final-message for AuthenticationSASLFinal, or throws 28P01. */
  handleResponse(data: Buffer): Buffer {
    this.enter('client-final');
    try {
      const message = data.toString('latin1');
      const cursor = new AttributeCursor(message);
      const channelBinding = cursor.expect('c', 'client-final-message');
      if (channelBinding !== Buffer.from(this.gs2Header, 'latin1').toString('base64')) {
        throw protocolViolation('SCRAM channel binding check failed');
      }
      const nonce = cursor.expect('r', 'client-final-message');
      let proofAt: number;
      let attribute: { name: string; value: string };
      do {
        proofAt = cursor.pos;
        if (cursor.atEnd()) throw malformed('Could not find proof in client-final-message.');
        attribute = cursor.any('client-final-message');
      } while (attribute.name !== 'p');
      const proof = decodeBase64(attribute.value);
      if (proof === null || proof.length !== KEY_BYTES) throw malformed('Malformed proof in client-final-message.');
      if (!cursor.atEnd()) throw malformed('Garbage found at the end of client-final-message.');
      if (nonce !== this.nonce) throw protocolViolation('invalid SCRAM response', 'Nonce does not match.');

      const withoutProof = message.slice(0, proofAt - 1);
      const authMessage = Buffer.from(`${this.clientFirstBare},${this.serverFirst},${withoutProof}`, 'latin1');
      const clientSignature = hmac(this.secret.storedKey, authMessage);
      const clientKey = xor(proof, clientSignature);
      if (!timingSafeEqual(sha256(clientKey), this.secret.storedKey) || this.doomedReason !== null) {
        throw passwordAuthenticationFailed(this.user);
      }
      this.recoveredClientKey = clientKey;
      this.state = 'succeeded';
      return Buffer.from(`v=${hmac(this.secret.serverKey, authMessage).toString('base64')}`, 'latin1');
    } catch (e) {
      this.state = 'failed';
      throw e;
    }
  }

  private enter(expected: ServerState): void {
    if (this.state !== expected) {
      const was = this.state;
      this.state = 'failed';
      throw protocolViolation('invalid SCRAM exchange state', `Expected the ${expected} message, but the exchange is in state ${was}.`);
    }
  }

  private readClientFirst(message: string): void {
    const flag = message[0];
    if (flag === 'p') {
      throw malformed('The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data.');
    }
    if (flag !== 'n' && flag !== 'y') throw malformed(`Unexpected channel-binding flag "${message.slice(0, 10)}".`);
    if (message[1] !== ',') throw malformed(`Comma expected, but found character "${message[1] ?? ''}".`);
    if (message[2] === 'a') {
      throw new PgProtocolError(SQLSTATE.FEATURE_NOT_SUPPORTED, 'client uses authorization identity, but it is not supported');
    }
    if (message[2] !== ',') throw malformed(`Unexpected attribute "${message[2] ?? ''}" in client-first-message.`);
    this.gs2Header = message.slice(0, 3);
    this.clientFirstBare = message.slice(3);
    const cursor = new AttributeCursor(this.clientFirstBare);
    if (cursor.peek() === 'm') {
      throw new PgProtocolError(SQLSTATE.FEATURE_NOT_SUPPORTED, 'client requires an unsupported SCRAM extension');
    }
    cursor.expect('n', 'client-first-message');
    const clientNonce = cursor.expect('r', 'client-first-message');
    if (!isPrintableNonce(clientNonce)) throw malformed('non-printable characters in SCRAM nonce');
    while (!cursor.atEnd()) cursor.any('client-first-message');
    this.nonce = clientNonce;
  }
}

function resolveSecret(secret: string | ScramSecret | null): { secret: ScramSecret | null; reason: string | null } {
  if (secret === null) return { secret: null, reason: 'the user has no password' };
  if (typeof secret !== 'string') return { secret, reason: null };
  if (secret.startsWith('SCRAM-SHA-256$')) {
    const parsed = parseScramSecret(secret);
    return parsed === null ? { secret: null, reason: 'the stored SCRAM secret is malformed' } : { secret: parsed, reason: null };
  }
  if (/^md5[0-9a-f]{32}$/.test(secret)) return { secret: null, reason: 'the user has an md5 password, which cannot be used for SCRAM' };
  return { secret: scramSecretFromPassword(secret), reason: null };
}

/** A made-up secret whose salt is stable per user, so that probing shows the same salt for known and unknown users. */
function mockSecret(user: string, seed: Buffer = MOCK_SEED): ScramSecret {
  const salt = createHash('sha256').update(seed).update(user).digest().subarray(0, 16);
  return { iterations: SCRAM_DEFAULT_ITERATIONS, salt, storedKey: randomBytes(KEY_BYTES), serverKey: randomBytes(KEY_BYTES) };
}

const MOCK_SEED = randomBytes(32);

type ClientState = 'initial' | 'server-first' | 'server-final' | 'succeeded' | 'failed';

export interface ScramClientOptions {
  /** The password; or give `keys` (derived earlier, or recovered by a ScramServerSession) instead. */
  password?: string;
  keys?: ScramKeys;
  /** Sent as n=; PostgreSQL ignores it and libpq sends it empty (the default). */
  user?: string;
  nonce?: NonceSource;
}

/**
 * The frontend side of one SCRAM exchange (no channel binding):
 *   AuthenticationSASL → initialResponse() in SASLInitialResponse → AuthenticationSASLContinue → handleContinue()
 *   in SASLResponse → AuthenticationSASLFinal → handleFinal() (checks the server's signature).
 * Malformed server messages throw PgProtocolError 08P01; keys for another salt or a wrong server signature, 28P01.
 */
export class ScramClientSession {
  readonly mechanism = SCRAM_SHA_256;
  private state: ClientState = 'initial';
  private readonly password: string | undefined;
  private derived: ScramKeys | null;
  private readonly user: string;
  private readonly nonceSource: NonceSource;
  private clientFirstBare = '';
  private clientNonce = '';
  private expectedServerSignature: Buffer | null = null;

  constructor(options: ScramClientOptions) {
    if (options.password === undefined && options.keys === undefined) throw new RangeError('ScramClientSession needs a password or keys');
    this.password = options.password;
    this.derived = options.keys ?? null;
    this.user = options.user ?? '';
    this.nonceSource = options.nonce ?? randomNonce;
  }

  /** The keys used (derived from the password on first use): cache them per (salt, iterations) to skip PBKDF2 next time. */
  get keys(): ScramKeys | null {
    return this.derived;
  }

  get succeeded(): boolean {
    return this.state === 'succeeded';
  }

  /** The client-first-message, for SASLInitialResponse with mechanism SCRAM_SHA_256. */
  initialResponse(): Buffer {
    this.enter('initial');
    this.clientNonce = freshNonce(this.nonceSource);
    const message = Buffer.from(`n,,n=${saslName(this.user)},r=${this.clientNonce}`, 'utf8');
    // Kept as latin1 (one char per byte) so that the AuthMessage holds the very bytes sent, whatever the user name.
    this.clientFirstBare = message.toString('latin1', 3);
    this.state = 'server-first';
    return message;
  }

  /** Takes AuthenticationSASLContinue's data (server-first-message); returns the client-final-message for SASLResponse. */
  handleContinue(data: Buffer): Buffer {
    this.enter('server-first');
    try {
      const serverFirst = data.toString('latin1');
      const cursor = new AttributeCursor(serverFirst);
      if (cursor.peek() === 'm') throw malformed('The server requires an unsupported SCRAM extension.');
      const nonce = cursor.expect('r', 'server-first-message');
      const saltText = cursor.expect('s', 'server-first-message');
      const iterationsText = cursor.expect('i', 'server-first-message');
      if (!nonce.startsWith(this.clientNonce) || nonce.length === this.clientNonce.length || !isPrintableNonce(nonce)) {
        throw protocolViolation('invalid SCRAM response', 'The server nonce does not extend the client nonce.');
      }
      const salt = decodeBase64(saltText);
      if (salt === null || salt.length === 0) throw malformed('The salt in server-first-message is not base64.');
      if (!/^[1-9]\d{0,9}$/.test(iterationsText) || Number(iterationsText) > 0x7fffffff) {
        throw malformed('The iteration count in server-first-message is invalid.');
      }
      const iterations = Number(iterationsText);
      let keys = this.derived;
      if (keys === null || keys.iterations !== iterations || !keys.salt.equals(salt)) {
        if (this.password === undefined) {
          throw new PgProtocolError(SQLSTATE.INVALID_PASSWORD, 'SCRAM keys do not match the server', {
            detail: `The keys held were derived with another salt or iteration count than the server's (${iterations} iterations); the user's password was changed since they were obtained.`,
          });
        }
        keys = deriveScramKeys(this.password, salt, iterations);
        this.derived = keys;
      }
      const withoutProof = `c=biws,r=${nonce}`;
      const authMessage = Buffer.from(`${this.clientFirstBare},${serverFirst},${withoutProof}`, 'latin1');
      const clientSignature = hmac(sha256(keys.clientKey), authMessage);
      const proof = xor(keys.clientKey, clientSignature);
      this.expectedServerSignature = hmac(keys.serverKey, authMessage);
      this.state = 'server-final';
      return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`, 'latin1');
    } catch (e) {
      this.state = 'failed';
      throw e;
    }
  }

  /** Takes AuthenticationSASLFinal's data; throws unless the server proved it knows the secret. */
  handleFinal(data: Buffer): void {
    this.enter('server-final');
    try {
      const cursor = new AttributeCursor(data.toString('latin1'));
      if (cursor.peek() === 'e') {
        throw new PgProtocolError(SQLSTATE.INVALID_PASSWORD, 'the server refused the SCRAM proof', { detail: `Server error: ${cursor.any('server-final-message').value}` });
      }
      const signature = decodeBase64(cursor.expect('v', 'server-final-message'));
      if (signature === null || signature.length !== KEY_BYTES || this.expectedServerSignature === null) {
        throw malformed('Malformed server signature in server-final-message.');
      }
      if (!timingSafeEqual(signature, this.expectedServerSignature)) {
        throw new PgProtocolError(SQLSTATE.INVALID_PASSWORD, 'incorrect server signature', {
          detail: 'The server could not prove that it knows the password: it may not be the server it claims to be.',
        });
      }
      this.state = 'succeeded';
    } catch (e) {
      this.state = 'failed';
      throw e;
    }
  }

  private enter(expected: ClientState): void {
    if (this.state !== expected) {
      const was = this.state;
      this.state = 'failed';
      throw protocolViolation('invalid SCRAM exchange state', `Expected to be in state ${expected}, but the exchange is in state ${was}.`);
    }
  }
}

/** RFC 5802 saslname: ',' and '=' escaped. */
function saslName(user: string): string {
  return user.replaceAll('=', '=3D').replaceAll(',', '=2C');
}
