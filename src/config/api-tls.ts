/**
 * HTTPS for the REST API: the server side (api.certfile, api.keyfile, api.cafile with api.verify_client) and the
 * client side used by peer probes and the CLI (the CA to check the agents' certificates against, and a client
 * certificate when the agents ask for one). Files are read once, at start, so a bad path stops the agent there.
 */
import { readFileSync } from 'node:fs';
import { PgwardenError } from '../errors.js';

export const VERIFY_CLIENT_MODES = ['none', 'optional', 'required'] as const;
export type VerifyClient = (typeof VERIFY_CLIENT_MODES)[number];

/** The api.* TLS settings of an agent file, paths absolute. */
export interface ApiTlsFiles {
  /** Serve HTTPS with this certificate and key; null: plain HTTP. */
  certfile: string | null;
  keyfile: string | null;
  /** CA that other agents' HTTPS certificates (and client certificates, under verify_client) must chain to. */
  cafile: string | null;
  verify_client: VerifyClient;
}

/** What node's https.createServer takes. */
export interface ApiHttpsOptions {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
  requestCert: boolean;
  rejectUnauthorized: boolean;
  minVersion: 'TLSv1.2';
}

/** What an HTTPS request to an agent needs: null fields fall back to node's defaults (system CAs, no client cert). */
export interface ApiClientTls {
  ca: Buffer | null;
  cert: Buffer | null;
  key: Buffer | null;
}

type Read = (file: string) => Buffer;
const readDefault: Read = (f) => readFileSync(f);

function readSetting(setting: string, file: string, read: Read): Buffer {
  try {
    return read(file);
  } catch (e) {
    throw new PgwardenError(
      'CONFIG_INVALID',
      `${setting} ${file} could not be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): check the path and that the agent's user may read it`,
      { cause: e },
    );
  }
}

/** The server's HTTPS options, or null for plain HTTP. */
export function loadApiHttps(files: ApiTlsFiles, read: Read = readDefault): ApiHttpsOptions | null {
  if (files.certfile === null || files.keyfile === null) return null;
  const verify = files.verify_client !== 'none';
  return {
    cert: readSetting('api.certfile', files.certfile, read),
    key: readSetting('api.keyfile', files.keyfile, read),
    ...(files.cafile === null ? {} : { ca: readSetting('api.cafile', files.cafile, read) }),
    requestCert: verify,
    rejectUnauthorized: files.verify_client === 'required',
    minVersion: 'TLSv1.2',
  };
}

/**
 * The client side: the agent's own certificate doubles as its client certificate towards peers that verify
 * clients. `prefix` names the settings in messages (api.* for an agent file, PGWARDEN_API_* for the CLI).
 */
export function loadApiClientTls(
  files: { cafile: string | null; certfile: string | null; keyfile: string | null },
  names: { cafile: string; certfile: string; keyfile: string } = { cafile: 'api.cafile', certfile: 'api.certfile', keyfile: 'api.keyfile' },
  read: Read = readDefault,
): ApiClientTls | null {
  if (files.cafile === null && files.certfile === null) return null;
  return {
    ca: files.cafile === null ? null : readSetting(names.cafile, files.cafile, read),
    cert: files.certfile === null ? null : readSetting(names.certfile, files.certfile, read),
    key: files.keyfile === null ? null : readSetting(names.keyfile, files.keyfile, read),
  };
}
