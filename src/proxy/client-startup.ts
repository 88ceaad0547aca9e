/**
 * The transport checks of a client's startup, before authentication: TLS on SSLRequest (and the refusal of bytes
 * injected before the handshake), a client certificate where client_tls_* asks for one, client_tls_sslmode require,
 * and auth_hba_file's cert method. The client keeps its own state; these take what they look at and throw the
 * PgProtocolError the client is refused with.
 */
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { PgProtocolError, SQLSTATE } from './protocol/errors.js';
import * as m from './protocol/messages.js';
import { type ClientTls, clientCertificateProblem } from './tls.js';
import type { Wire } from './wire/wire.js';

/** How a client is connected while it starts up. */
export interface StartupTransport {
  /** The Node socket (a TLSSocket once encrypted). */
  readonly socket: Wire;
  readonly encrypted: boolean;
  /** Accepted on the Unix-domain socket. */
  readonly local: boolean;
}

/**
 * SSLRequest with TLS configured: refused when the connection is encrypted already, or when bytes came after the
 * SSLRequest (`unreadBytes`) before the handshake: they were sent in plaintext and could be a man-in-the-middle's
 * injection (CVE-2021-23214).
 */
export function checkTlsRequest(encrypted: boolean, unreadBytes: number): void {
  if (encrypted) throw new PgProtocolError(SQLSTATE.PROTOCOL_VIOLATION, 'SSLRequest received on a connection that already uses TLS');
  if (unreadBytes > 0) {
    throw new PgProtocolError(SQLSTATE.PROTOCOL_VIOLATION, 'received unencrypted data after SSL request', {
      hint: 'This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.',
    });
  }
}

/** Answers 'S' on `raw` (its listeners already off) and returns the TLSSocket over it the startup continues on. */
export function acceptTls(raw: Socket, tls: ClientTls): TLSSocket {
  raw.write(m.SSL_ACCEPTED);
  return new TLSSocket(raw, {
    isServer: true,
    secureContext: tls.secureContext,
    requestCert: tls.verifiesClientCerts,
    rejectUnauthorized: false,
  });
}

/**
 * The startup packet of `user` for `database` arrived on `transport`: refuses a client certificate that does not
 * verify (when client_tls_* asks for one) and, with client_tls_sslmode require, a plaintext TCP connection.
 */
export function checkTransport(transport: StartupTransport, tls: ClientTls | null, user: string, database: string): void {
  if (transport.encrypted && tls?.verifiesClientCerts === true) {
    // Decrypted bytes arrived: the handshake is done and the certificate (if any) is known.
    const problem = clientCertificateProblem(transport.socket as TLSSocket, tls);
    if (problem !== null) throw new PgProtocolError(SQLSTATE.INVALID_AUTHORIZATION_SPECIFICATION, `${problem}: connection refused`);
  }
  // A Unix-domain socket never leaves the machine: sslmode require is about the network (as PgBouncer).
  if (!transport.encrypted && !transport.local && tls?.sslmode === 'require') {
    // PostgreSQL's wording for a hostssl-only pg_hba, which clients and people recognise.
    throw new PgProtocolError(
      SQLSTATE.INVALID_AUTHORIZATION_SPECIFICATION,
      `no pg_hba.conf entry for host "${transport.socket.remoteAddress ?? 'unknown'}", user "${user}", database "${database}", no encryption`,
      { hint: 'This proxy accepts only TLS connections (client_tls_sslmode require): connect with sslmode=require or stronger.' },
    );
  }
}

/**
 * auth_hba_file's cert: a client certificate (already verified against client_tls_ca_file by checkTransport)
 * whose CN is the user, as PostgreSQL's cert method without a user map.
 */
export function checkCertificateUser(transport: StartupTransport, user: string): void {
  const peer = transport.encrypted ? (transport.socket as TLSSocket).getPeerCertificate() : null;
  if (peer === null || peer.subject === undefined) {
    throw new PgProtocolError(SQLSTATE.INVALID_AUTHORIZATION_SPECIFICATION, 'connection requires a valid client certificate');
  }
  const cn = peer.subject.CN;
  if (cn !== user) {
    throw new PgProtocolError(SQLSTATE.INVALID_AUTHORIZATION_SPECIFICATION, `certificate authentication failed for user "${user}"`, {
      detail: `The certificate's common name is ${cn === undefined ? 'missing' : `"${String(cn)}"`}; it must be the user name.`,
    });
  }
}
