/**
 * TLS from the proxy to PostgreSQL (server_tls_*), with libpq's sslmode meanings: prefer and require encrypt
 * without checking who answers; verify-ca checks the certificate chain against server_tls_ca_file (or the
 * system's CAs); verify-full also checks that the certificate names the host the proxy connects to.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { type ConnectionOptions, type PeerCertificate, type SecureContext, checkServerIdentity, createSecureContext } from 'node:tls';
import type { ServerTlsFiles } from '../config/proxy.js';
import { PgwardenError } from '../errors.js';
import type { Endpoint } from './topology.js';
import { readTlsFile } from './tls.js';

export type ServerSslMode = ServerTlsFiles['sslmode'];

export interface ServerTls {
  readonly sslmode: ServerSslMode;
  readonly secureContext: SecureContext;
}

/** Reads the files once at start, so that a bad path stops the proxy instead of every login. */
export function loadServerTls(files: ServerTlsFiles | null, read: (file: string) => Buffer = (f) => readFileSync(f)): ServerTls | null {
  if (files === null) return null;
  const load = (what: string, file: string | null): Buffer | undefined => (file === null ? undefined : readTlsFile(what, file, read));
  const ca = load('server_tls_ca_file', files.caFile);
  const cert = load('server_tls_cert_file', files.certFile);
  const key = load('server_tls_key_file', files.keyFile);
  try {
    const secureContext = createSecureContext({ ...(ca === undefined ? {} : { ca }), ...(cert === undefined ? {} : { cert }), ...(key === undefined ? {} : { key }), minVersion: 'TLSv1.2' });
    return { sslmode: files.sslmode, secureContext };
  } catch (e) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `the server_tls_* files could not be used (${(e as Error).message}): they must be PEM files, and server_tls_key_file must match server_tls_cert_file`,
      { cause: e },
    );
  }
}

/** What tls.connect needs to upgrade a connection to `endpoint` under `tls`'s sslmode. */
export function serverTlsConnectOptions(endpoint: Endpoint, tls: ServerTls): ConnectionOptions {
  const verify = tls.sslmode === 'verify-ca' || tls.sslmode === 'verify-full';
  return {
    secureContext: tls.secureContext,
    // SNI must not carry an IP address (RFC 6066); the name check below uses the host either way.
    ...(isIP(endpoint.host) === 0 ? { servername: endpoint.host } : {}),
    rejectUnauthorized: verify,
    checkServerIdentity:
      tls.sslmode === 'verify-full' ? (_name: string, cert: PeerCertificate) => checkServerIdentity(endpoint.host, cert) : () => undefined,
  };
}
