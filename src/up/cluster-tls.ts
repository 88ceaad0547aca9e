/**
 * Certificates signed by the local CA (src/proxy/tls.ts ensureLocalCa) for what talks TLS inside a cluster:
 * each member's PostgreSQL and REST API, and client certificates. Made with the openssl CLI, since node:crypto
 * cannot create X.509 certificates.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { PgwardenError } from '../errors.js';

const run = promisify(execFile);

export interface CaPair {
  caCert: string;
  caKey: string;
}

export interface CertificateRequest {
  /** File name stem: `<dir>/<name>.crt` and `<dir>/<name>.key`. */
  name: string;
  commonName: string;
  /** subjectAltName entries; verify-full and HTTPS clients match the host they dial against them. */
  dns?: readonly string[];
  ips?: readonly string[];
  /** serverAuth, clientAuth, or both (a member is a server to some and a client to others). */
  usage: 'server' | 'client' | 'both';
}

export interface CertificateFiles {
  cert: string;
  key: string;
}

export function certificateFiles(dir: string, name: string): CertificateFiles {
  return { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) };
}

/** The openssl extension file of a leaf certificate (pure). */
export function leafExtensions(request: CertificateRequest): string {
  const usage = { server: 'serverAuth', client: 'clientAuth', both: 'serverAuth,clientAuth' }[request.usage];
  const san = [...(request.dns ?? []).map((d) => `DNS:${d}`), ...(request.ips ?? []).map((ip) => `IP:${ip}`)];
  return [
    'basicConstraints=CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    `extendedKeyUsage=${usage}`,
    ...(san.length > 0 ? [`subjectAltName=${san.join(',')}`] : []),
    '',
  ].join('\n');
}

/**
 * Makes `<dir>/<name>.key` (EC P-256, mode 0600) and `<dir>/<name>.crt` signed by `ca`. Existing files are kept,
 * so a restart does not change what peers already trust.
 */
export async function issueCertificate(ca: CaPair, dir: string, request: CertificateRequest, openssl = 'openssl'): Promise<CertificateFiles> {
  const files = certificateFiles(dir, request.name);
  if (existsSync(files.cert) && existsSync(files.key)) return files;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const csr = path.join(dir, `${request.name}.csr`);
  const extensions = path.join(dir, `${request.name}.ext`);
  try {
    await run(openssl, [
      'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', files.key, '-out', csr, '-subj', `/CN=${request.commonName.replace(/[/=]/g, '_')}`,
    ]);
    await writeFile(extensions, leafExtensions(request));
    await run(openssl, [
      'x509', '-req', '-in', csr, '-CA', ca.caCert, '-CAkey', ca.caKey,
      '-set_serial', `0x${Date.now().toString(16)}${Math.floor(Math.random() * 0xffff).toString(16)}`,
      '-days', '825', '-sha256', '-extfile', extensions, '-out', files.cert,
    ]);
  } catch (e) {
    await rm(files.cert, { force: true });
    await rm(files.key, { force: true });
    throw new PgwardenError('UP_FAILED', `issuing the certificate ${files.cert} with ${openssl} failed: ${(e as Error).message.split('\n')[0]}`, { cause: e });
  } finally {
    await rm(csr, { force: true });
    await rm(extensions, { force: true });
  }
  await chmod(files.key, 0o600);
  return files;
}

/** A member's TLS files in `<memberDir>/tls`, owned by the PostgreSQL OS user (PostgreSQL insists on it for the key). */
export interface MemberTlsFiles {
  dir: string;
  /** Certificate for localhost and 127.0.0.1, for serving (PostgreSQL, REST API) and as a client. */
  cert: string;
  key: string;
  /** A copy of the local CA's certificate: what this member trusts. */
  ca: string;
}

export function memberTlsFiles(memberDir: string): MemberTlsFiles {
  const dir = path.join(memberDir, 'tls');
  return { dir, ...certificateFiles(dir, 'server'), ca: path.join(dir, 'ca.crt') };
}

/** The member's TLS files were made (by the `pgwarden up` that wrote its agent file). */
export function memberTlsPresent(memberDir: string): boolean {
  const files = memberTlsFiles(memberDir);
  return [files.cert, files.key, files.ca].every((f) => existsSync(f));
}

/**
 * Issues `member`'s certificate from the local CA into `<memberDir>/tls` and hands the directory to `owner` (the
 * PostgreSQL OS user when we are root; null: ourselves).
 */
export async function ensureMemberTls(
  ca: CaPair,
  memberDir: string,
  member: string,
  owner: { uid: number; gid: number } | null,
  openssl = 'openssl',
): Promise<MemberTlsFiles> {
  const files = memberTlsFiles(memberDir);
  await issueCertificate(ca, files.dir, { name: 'server', commonName: member, dns: ['localhost'], ips: ['127.0.0.1'], usage: 'both' }, openssl);
  await copyFile(ca.caCert, files.ca);
  await chmod(files.dir, 0o700);
  if (owner) for (const f of [files.dir, files.cert, files.key, files.ca]) await chown(f, owner.uid, owner.gid);
  return files;
}

/**
 * What a member's agent file gets for TLS inside the cluster: PostgreSQL serves TLS with the member's certificate,
 * and replication, cloning and rewinding check the other member's certificate and address (verify-full).
 */
export function memberTlsAgentSettings(files: MemberTlsFiles): {
  parameters: Record<string, string>;
  clientSsl: { sslmode: 'verify-full'; sslrootcert: string };
} {
  return {
    parameters: { ssl: 'on', ssl_cert_file: files.cert, ssl_key_file: files.key, ssl_ca_file: files.ca },
    clientSsl: { sslmode: 'verify-full', sslrootcert: files.ca },
  };
}
