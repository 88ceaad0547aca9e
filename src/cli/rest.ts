/**
 * Calls of a member's REST API for the requests only its agent can carry out (restart, reload, reinitialize).
 */
import { apiRequest, type ApiResponse } from '../api/client.js';
import type { ApiClientTls } from '../config/api-tls.js';
import { PgwardenError } from '../errors.js';
import type { CliApiCredentials } from '../config/cli.js';

const REQUEST_TIMEOUT_MS = 5000;

export interface RestAnswer {
  status: number;
  message: string;
}

/** node's TLS verification failures (an unknown CA, a name mismatch, an expired certificate). */
export function isCertificateError(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code ?? '';
  return /CERT|SIGNATURE|SELF_SIGNED|ERR_TLS_CERT_ALTNAME/.test(code);
}

/** POSTs to `<apiUrl>/<endpoint>` with HTTP Basic auth; resolves with the agent's answer when it is 2xx. */
export async function postToMember(
  member: string,
  apiUrl: string,
  endpoint: 'restart' | 'reload' | 'reinitialize',
  credentials: CliApiCredentials | null,
  body: Record<string, unknown> = {},
  tls: ApiClientTls | null = null,
): Promise<RestAnswer> {
  if (credentials === null) {
    throw new PgwardenError(
      'API_UNAUTHORIZED',
      `${endpoint} goes through ${member}'s REST API, which needs the agents' api.username and api.password: ` +
        'pass --config with an agent\'s file, or set PGWARDEN_API_USER and PGWARDEN_API_PASSWORD',
    );
  }
  const url = `${apiUrl.replace(/\/+$/, '')}/${endpoint}`;
  let response: ApiResponse;
  try {
    response = await apiRequest(url, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`, 'utf8').toString('base64')}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify(body),
      timeoutMs: REQUEST_TIMEOUT_MS,
      tls,
    });
  } catch (e) {
    const detail = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    if (isCertificateError(e)) {
      throw new PgwardenError(
        'CONFIG_INVALID',
        `${member}'s REST API at ${apiUrl} has a certificate this CLI does not trust (${detail}: ${(e as Error).message}): ` +
          "set api.cafile in the --config file, or PGWARDEN_API_CAFILE, to the CA certificate that signed the agents' certificates",
        { cause: e },
      );
    }
    throw new PgwardenError(
      'TIMEOUT',
      `${member}'s REST API at ${apiUrl} did not answer (${detail}): check that its agent is running (\`pgwarden list\` shows the members that are)`,
      { cause: e },
    );
  }
  const message = response.text.trim();
  if (response.status === 401) {
    throw new PgwardenError(
      'API_UNAUTHORIZED',
      `${member}'s REST API refused the credentials: use the agents' api.username and api.password (--config with an agent's file, or PGWARDEN_API_USER and PGWARDEN_API_PASSWORD)`,
    );
  }
  if (response.status < 200 || response.status >= 300) {
    throw new PgwardenError('REQUEST_REFUSED', `${member} refused the ${endpoint} (HTTP ${response.status}): ${message}`);
  }
  return { status: response.status, message };
}
