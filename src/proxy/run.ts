/**
 * `pgwarden proxy --config proxy.yml [--primary host:port] [--replica host:port …]`: the static-mode pooler in
 * the foreground until SIGTERM/SIGINT, which stop accepting, let running transactions finish briefly, and exit.
 */
import { loadProxyConfig } from '../config/proxy.js';
import { parseHostPort } from '../config/schema.js';
import { PgwardenError, describeError } from '../errors.js';
import { createLogger } from '../log.js';
import { ProxyServer } from './server.js';
import { type Endpoint, StaticTopology } from './topology.js';

export interface RunProxyOptions {
  config: string;
  primary?: string;
  replica?: string[];
  logLevel?: string;
}

function endpoint(value: string, flag: string): Endpoint {
  const parsed = parseHostPort(value);
  if (parsed === null) throw new PgwardenError('CONFIG_INVALID', `${flag} ${JSON.stringify(value)} is invalid: expected host:port, e.g. 127.0.0.1:5432`);
  return parsed;
}

export async function runProxy(options: RunProxyOptions): Promise<void> {
  const config = loadProxyConfig(options.config);
  const primary = options.primary !== undefined ? endpoint(options.primary, '--primary') : (config.primary ?? null);
  if (primary === null) {
    throw new PgwardenError('CONFIG_INVALID', 'no primary: pass --primary host:port or set primary: "host:port" in the proxy config');
  }
  const replicas = (options.replica ?? []).map((r) => endpoint(r, '--replica'));
  const log = createLogger(options.logLevel ?? 'info', { component: 'proxy' });
  const proxy = new ProxyServer({ config, topology: new StaticTopology(primary, replicas.length > 0 ? replicas : config.replicas), logger: log });
  await proxy.start();
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'proxy shutting down');
    proxy.stop(5000).then(
      () => process.exit(0),
      (e: unknown) => {
        log.error({ err: describeError(e) }, 'proxy shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}
