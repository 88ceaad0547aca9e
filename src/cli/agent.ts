import { startApi } from '../api/server.js';
import { loadApiClientTls, loadApiHttps } from '../config/api-tls.js';
import { loadAgentConfig } from '../config/load.js';
import { parseHostPort, type AgentConfig } from '../config/schema.js';
import { EtcdDcs } from '../dcs/etcd.js';
import { loadEtcdTls } from '../dcs/etcd-tls.js';
import { describeError } from '../errors.js';
import { Agent } from '../ha/agent.js';
import { LeaseDeadman } from '../ha/deadman.js';
import type { PeerProber } from '../ha/world.js';
import { probePeers } from '../api/peer-probe.js';
import { createLogger } from '../log.js';
import { PostgresServer } from '../postgres/server.js';

/** Builds the PostgreSQL controller from the agent's file settings; `onRepair` hears of stale locks it removed. */
export function postgresServerFor(config: AgentConfig, onRepair?: (message: string) => void): PostgresServer {
  const listen = parseHostPort(config.postgresql.listen)!;
  const connect = parseHostPort(config.postgresql.connect_address)!;
  return new PostgresServer({
    name: config.name,
    dataDir: config.postgresql.data_dir,
    binDir: config.postgresql.bin_dir,
    host: listen.host,
    port: listen.port,
    connectHost: connect.host,
    runAs: config.postgresql.run_as,
    superuser: config.postgresql.superuser,
    replication: config.postgresql.replication,
    rewind: config.postgresql.rewind,
    parameters: config.postgresql.parameters,
    hbaExtra: config.postgresql.pg_hba_extra,
    logFile: config.postgresql.log_file ?? undefined,
    onRepair,
  });
}

/**
 * `pgwarden agent --config FILE`: runs until SIGTERM/SIGINT, then shuts PostgreSQL down cleanly and revokes
 * the lease so that a replica takes over at once (see Agent.stop). SIGUSR2 ends the agent alone, leaving
 * PostgreSQL running, for restarting or upgrading the agent: the next one takes over the same server and keys.
 */
export async function runAgent(configPath: string): Promise<void> {
  const config = loadAgentConfig(configPath);
  const log = createLogger(config.log.level, { cluster: config.cluster, member: config.name });
  const dcs = new EtcdDcs({
    endpoints: config.etcd.endpoints,
    cluster: config.cluster,
    username: config.etcd.username ?? undefined,
    password: config.etcd.password ?? undefined,
    callTimeoutMs: config.etcd.call_timeout_ms,
    tls: loadEtcdTls(config.etcd.tls),
  });
  const pg = postgresServerFor(config, (message) => log.warn(message));
  const https = loadApiHttps(config.api.tls);
  const peerTls = loadApiClientTls(config.api.tls);
  const deadman = new LeaseDeadman(
    pg.runDir,
    pg.dataDir,
    (e) => log.error({ err: describeError(e) }, 'could not arm the lease deadman'),
    (message) => log.warn(message),
  );
  const peers: PeerProber = (view, me, timeoutMs) => probePeers(view, me, timeoutMs, peerTls);
  const agent = new Agent({ config, dcs, pg, log, peers, deadman });
  const api = await startApi({
    listen: config.api.listen,
    https,
    backend: agent,
    auth: { username: config.api.username, password: config.api.password },
    logger: log,
  });
  log.info({ api: api.url, etcd: config.etcd.endpoints, dataDir: config.postgresql.data_dir }, 'agent started');
  await agent.start();

  let stopping = false;
  const shutdown = (signal: string, stopPostgres = true): void => {
    if (stopping) return;
    stopping = true;
    log.info(
      { signal },
      stopPostgres
        ? 'shutting down: stopping PostgreSQL and releasing the lease'
        : 'exiting, leaving PostgreSQL running: the next agent started on this member takes it over',
    );
    void (async () => {
      try {
        await agent.stop({ stopPostgres });
        await api.close();
      } catch (e) {
        log.error({ err: describeError(e) }, 'shutdown failed');
      }
      process.exit(0);
    })();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGUSR2', () => shutdown('SIGUSR2', false));
}
