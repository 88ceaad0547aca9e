/**
 * TLS towards etcd (Patroni's etcd3.cacert, cert, key): the CA etcd's certificate must chain to, and the client
 * certificate etcd asks for under --client-cert-auth. Read once at start; a missing file names its setting.
 */
import { readFileSync } from 'node:fs';
import { PgwardenError } from '../errors.js';

/** Paths as configured (absolute); null: not set. */
export interface EtcdTlsFiles {
  cacert: string | null;
  cert: string | null;
  key: string | null;
}

/** The files' contents, as etcd3's `credentials` takes them. */
export interface EtcdTls {
  cacert: Buffer | null;
  cert: Buffer | null;
  key: Buffer | null;
}

/** Whether any TLS setting is given. */
export function hasEtcdTls(files: EtcdTlsFiles): boolean {
  return files.cacert !== null || files.cert !== null || files.key !== null;
}

/** Reads the files; `prefix` is how the settings are named where they came from ("etcd." or "etcd.tls_"). */
export function loadEtcdTls(
  files: EtcdTlsFiles,
  prefix = 'etcd.',
  read: (file: string) => Buffer = (f) => readFileSync(f),
): EtcdTls | null {
  if (!hasEtcdTls(files)) return null;
  const load = (name: keyof EtcdTlsFiles): Buffer | null => {
    const file = files[name];
    if (file === null) return null;
    try {
      return read(file);
    } catch (e) {
      throw new PgwardenError(
        'CONFIG_INVALID',
        `${prefix}${prefix.endsWith('_') ? name.toUpperCase() : name} ${file} could not be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): check the path and that this user may read it`,
        { cause: e },
      );
    }
  };
  return { cacert: load('cacert'), cert: load('cert'), key: load('key') };
}

/**
 * Problems of a TLS setting combination, for config validation: cert and key go together, and TLS needs https://
 * endpoints (etcd3 would otherwise speak TLS to a plaintext port, or plaintext past the certificates).
 */
export function etcdTlsProblems(files: { cacert?: string; cert?: string; key?: string }, endpoints: readonly string[]): Array<{ key: string; message: string }> {
  const problems: Array<{ key: string; message: string }> = [];
  if ((files.cert === undefined) !== (files.key === undefined)) {
    problems.push({
      key: files.cert === undefined ? 'cert' : 'key',
      message: 'etcd.cert and etcd.key go together (the client certificate etcd checks, and its key): set both, or neither',
    });
  }
  const tls = files.cacert !== undefined || files.cert !== undefined || files.key !== undefined;
  const plain = endpoints.filter((e) => e.startsWith('http://'));
  if (tls && plain.length > 0) {
    problems.push({
      key: 'endpoints',
      message: `must be https:// URLs when etcd.cacert, etcd.cert or etcd.key is set (etcd serves TLS); got ${plain.join(', ')}: write them as ${plain.map((e) => e.replace(/^http:/, 'https:')).join(', ')}`,
    });
  }
  return problems;
}
