/**
 * TLS for the proxy's clients: the secure context built from client_tls_* and, for `pgwarden up` and tests, a
 * local CA with a server certificate for 127.0.0.1/localhost made with the openssl CLI (node:crypto cannot
 * create X.509 certificates).
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { type SecureContext, type TLSSocket, createSecureContext } from 'node:tls';
import { promisify } from 'node:util';
import type { ClientTlsFiles } from '../config/proxy.js';
import { PgwardenError } from '../errors.js';

const run = promisify(execFile);

export interface ClientTls {
  /** 'allow': plaintext and TLS clients; 'require': plaintext clients are refused (28000) after their startup. */
  readonly sslmode: 'allow' | 'require';
  readonly secureContext: SecureContext;
  /** client_tls_ca_file was set: client certificates are asked for, and one that does not verify is refused. */
  readonly verifiesClientCerts: boolean;
  /** The certificates of client_tls_ca_file. */
  readonly clientCas: readonly X509Certificate[];
}

/** One PEM file named by the `setting` of the proxy config; a CONFIG_INVALID error naming the setting otherwise. */
export function readTlsFile(setting: string, file: string, read: (file: string) => Buffer): Buffer {
  try {
    return read(file);
  } catch (e) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `${setting} ${file} could not be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): check the path and that this user may read it`,
      { cause: e },
    );
  }
}

/** Reads the certificate files and builds the context once; a bad file stops the proxy at start, not per client. */
export function loadClientTls(files: ClientTlsFiles | null, read: (file: string) => Buffer = (f) => readFileSync(f)): ClientTls | null {
  if (files === null) return null;
  const load = (what: string, file: string): Buffer => readTlsFile(what, file, read);
  const cert = load('client_tls_cert_file', files.certFile);
  const key = load('client_tls_key_file', files.keyFile);
  const ca = files.caFile === null ? undefined : load('client_tls_ca_file', files.caFile);
  let secureContext: SecureContext;
  try {
    secureContext = createSecureContext({ cert, key, ...(ca === undefined ? {} : { ca }), minVersion: 'TLSv1.2' });
  } catch (e) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `the client TLS certificate ${files.certFile} and key ${files.keyFile} could not be used (${(e as Error).message}): they must be PEM files and the key must match the certificate`,
      { cause: e },
    );
  }
  let clientCas: X509Certificate[] = [];
  if (ca !== undefined) {
    try {
      clientCas = (ca.toString('latin1').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((pem) => new X509Certificate(pem));
    } catch (e) {
      throw new PgwardenError('CONFIG_INVALID', `client_tls_ca_file ${files.caFile} holds a certificate that could not be read (${(e as Error).message}): it must be PEM`, { cause: e });
    }
    if (clientCas.length === 0) throw new PgwardenError('CONFIG_INVALID', `client_tls_ca_file ${files.caFile} holds no PEM certificate: put the CA's certificate in it`);
  }
  return { sslmode: files.sslmode, secureContext, verifiesClientCerts: ca !== undefined, clientCas };
}

/**
 * Why the client's certificate is not acceptable, or null (also when it sent none: certificates are optional).
 * A TLSSocket made outside a tls.Server gets no `authorized` from node, so the check is done here: the
 * certificate must be issued and signed by a certificate of client_tls_ca_file and be within its validity.
 * Intermediate CAs are not followed.
 */
export function clientCertificateProblem(socket: TLSSocket, tls: ClientTls, now = Date.now()): string | null {
  const peer = socket.getPeerX509Certificate();
  if (peer === undefined) return null;
  if (now < Date.parse(peer.validFrom) || now > Date.parse(peer.validTo)) return `the client certificate "${peer.subject}" is not valid now`;
  const issuer = tls.clientCas.find((ca) => peer.checkIssued(ca) && peer.verify(ca.publicKey));
  return issuer === undefined ? `the client certificate "${peer.subject}" is not signed by a CA of client_tls_ca_file` : null;
}

export interface LocalCaFiles {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
}

export function localCaFiles(dir: string): LocalCaFiles {
  return {
    dir,
    caCert: path.join(dir, 'ca.crt'),
    caKey: path.join(dir, 'ca.key'),
    serverCert: path.join(dir, 'server.crt'),
    serverKey: path.join(dir, 'server.key'),
  };
}

/** The openssl binary answers, or null with what went wrong (the caller then goes without TLS). */
export async function opensslMissing(openssl = 'openssl'): Promise<string | null> {
  try {
    await run(openssl, ['version']);
    return null;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? `${openssl} is not installed` : `${openssl} version failed: ${(e as Error).message}`;
  }
}

/**
 * Makes `dir` hold a local CA (ca.key, self-signed ca.crt) and a certificate for the proxy signed by it
 * (server.key, server.crt with subjectAltName DNS:localhost, IP:127.0.0.1), keys mode 0600. Files already there
 * are kept: clients keep trusting the same ca.crt across restarts.
 */
export async function ensureLocalCa(dir: string, openssl = 'openssl'): Promise<LocalCaFiles> {
  const files = localCaFiles(dir);
  if ([files.caCert, files.caKey, files.serverCert, files.serverKey].every((f) => existsSync(f))) return files;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const csr = path.join(dir, 'server.csr');
  const extensions = path.join(dir, 'server.ext');
  try {
    if (!existsSync(files.caCert) || !existsSync(files.caKey)) {
      await run(openssl, [
        'req', '-x509', ...ec, '-keyout', files.caKey, '-out', files.caCert, '-days', '3650', '-subj', '/CN=pgwarden local CA',
        '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      ]);
    }
    await run(openssl, ['req', '-new', ...ec, '-keyout', files.serverKey, '-out', csr, '-subj', '/CN=localhost']);
    await writeFile(
      extensions,
      'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n',
    );
    await run(openssl, [
      'x509', '-req', '-in', csr, '-CA', files.caCert, '-CAkey', files.caKey, '-set_serial', `0x${Date.now().toString(16)}`,
      '-days', '825', '-sha256', '-extfile', extensions, '-out', files.serverCert,
    ]);
  } catch (e) {
    throw new PgwardenError('UP_FAILED', `creating the local CA and proxy certificate in ${dir} with ${openssl} failed: ${(e as Error).message.split('\n')[0]}`, {
      cause: e,
    });
  } finally {
    await rm(csr, { force: true });
    await rm(extensions, { force: true });
  }
  await chmod(files.caKey, 0o600);
  await chmod(files.serverKey, 0o600);
  return files;
}
