/**
 * A client's password exchange with the proxy: md5 (a salt, then the hashed password) or SCRAM-SHA-256 (SASL initial
 * response, then the final response), checked against the secret from auth_file or auth_query. md5 clients of users
 * whose secret is a SCRAM verifier are asked for SCRAM, as PostgreSQL does. No I/O: the client writes what it is given.
 */
import type { ScramKeys } from '../protocol/scram.js';
import type { AuthMethod } from './auth/hba.js';
import { md5Salt, verifyMd5Response } from './auth/md5.js';
import { ScramServerSession } from './auth/scram.js';
import * as m from './protocol/messages.js';
import type { MessageWriter } from './protocol/writer.js';

/** The proof a client sent and was accepted with. */
export interface PasswordAccepted {
  /** SCRAM: the server-final message, sent with AuthenticationSASLFinal at login; null for md5. */
  saslFinal: Buffer | null;
  /** SCRAM: the keys recovered from the exchange (pass-through to PostgreSQL), or null. */
  scramKeys: ScramKeys | null;
}

export class PasswordExchange {
  private readonly salt: Buffer | null = null;
  private readonly scram: ScramServerSession | null = null;
  /** SCRAM: the SASLInitialResponse was handled, the SASLResponse comes next. */
  private continued = false;

  constructor(
    private readonly user: string,
    method: AuthMethod,
    /** The secret the client is checked against; null for an unknown user (which then fails as a wrong password). */
    readonly secret: string | null,
  ) {
    if (method === 'md5' && (secret === null || !secret.startsWith('SCRAM-SHA-256$'))) this.salt = md5Salt();
    else this.scram = new ScramServerSession({ user, secret });
  }

  /** The request for the password (AuthenticationMD5Password or AuthenticationSASL), written to `w`. */
  request(w: MessageWriter): Buffer {
    if (this.salt !== null) return m.writeAuthenticationMD5Password(w, this.salt).flush();
    return m.writeAuthenticationSASL(w, this.scram!.mechanisms).flush();
  }

  /**
   * The client's password message buf[start, end) (its body): the next message to send it (SCRAM's
   * AuthenticationSASLContinue), or the proof accepted. Throws PgProtocolError 28P01 for a wrong password.
   */
  receive(buf: Buffer, start: number, end: number, w: MessageWriter): Buffer | PasswordAccepted {
    if (this.salt !== null) {
      const response = m.decodePasswordMessage(buf, start, end);
      verifyMd5Response({ user: this.user, secret: this.secret, salt: this.salt, response });
      return { saslFinal: null, scramKeys: null };
    }
    const scram = this.scram!;
    if (!this.continued) {
      const { mechanism, data } = m.decodeSASLInitialResponse(buf, start, end);
      this.continued = true;
      return m.writeAuthenticationSASLContinue(w, scram.handleInitialResponse(mechanism, data)).flush();
    }
    const final = scram.handleResponse(m.decodeSASLResponse(buf, start, end));
    return { saslFinal: final, scramKeys: scram.passThroughKeys() };
  }
}
