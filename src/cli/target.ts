/**
 * Which cluster a CLI command talks to: `--config FILE` (an agent's YAML), `--dir DIR` (a cluster made by
 * `pgwarden up`), PGWARDEN_ETCD + PGWARDEN_CLUSTER, or else the local cluster in `.pgwarden` when there is one.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { type ApiClientTls, loadApiClientTls } from '../config/api-tls.js';
import { cliApiCaFileFromEnv, cliApiCredentialsFromEnv, cliEtcdTlsFromEnv, type CliApiCredentials } from '../config/cli.js';
import { type EtcdTls, loadEtcdTls } from '../dcs/etcd-tls.js';
import { cliClusterFromEnv } from '../config/cli-env.js';
import { loadAgentConfig } from '../config/load.js';
import { EtcdDcs } from '../dcs/etcd.js';
import { PgwardenError, isPgwardenError } from '../errors.js';
import type { ClusterView } from '../cluster/types.js';
import { LocalCluster } from '../up/local-cluster.js';
import { FILES } from '../up/state.js';
import { DEFAULT_DIR } from './options.js';

export { DEFAULT_DIR };

/** etcd calls of the CLI may take longer than the agents' (a person waits, not a lease). */
const CLI_ETCD_TIMEOUT_MS = 3000;

export interface TargetOptions {
  config?: string;
  dir?: string;
}

export interface ClusterTarget {
  cluster: string;
  etcd: string[];
  etcdAuth: { username: string; password: string } | null;
  /** TLS towards etcd (the CA of its certificate, a client certificate); null: plain, or the system's CAs. */
  etcdTls: EtcdTls | null;
  /** Credentials for the members' REST API; null when none are known (restart/reload/reinit then refuse). */
  api: CliApiCredentials | null;
  /** TLS towards the members' REST APIs (https URLs): the CA of their certificates, a client certificate. */
  apiTls: ApiClientTls | null;
  /** Where the cluster was found, for messages ("--config /etc/pgwarden/pg1.yml"). */
  source: string;
  /** Set when the cluster is a local one (`pgwarden up`). */
  localDir: string | null;
}

const NOT_FOUND_HELP =
  'pass --config FILE (an agent\'s YAML file), --dir DIR (a cluster made by `pgwarden up --dir DIR`), ' +
  'or set PGWARDEN_ETCD and PGWARDEN_CLUSTER; to create a local cluster run `pgwarden up`';

function envEtcdTls(): EtcdTls | null {
  const files = cliEtcdTlsFromEnv();
  return files === null ? null : loadEtcdTls(files, 'PGWARDEN_ETCD_');
}

function envApiTls(): ApiClientTls | null {
  const cafile = cliApiCaFileFromEnv();
  return cafile === null ? null : loadApiClientTls({ cafile, certfile: null, keyfile: null }, { cafile: 'PGWARDEN_API_CAFILE', certfile: '', keyfile: '' });
}

async function localTarget(dir: string, explicit: boolean): Promise<ClusterTarget> {
  const local = await LocalCluster.open({ dir, mustExist: true }).catch((e: unknown) => {
    if (isPgwardenError(e) && e.code === 'CLUSTER_NOT_FOUND' && !explicit) {
      throw new PgwardenError('CLUSTER_NOT_FOUND', `no cluster found: ${NOT_FOUND_HELP}`);
    }
    throw e;
  });
  if (local.etcdPid() === null) {
    throw new PgwardenError(
      'CLUSTER_NOT_FOUND',
      `the local cluster in ${local.dir} is not running: start it with \`pgwarden up --dir ${dir}\``,
    );
  }
  return {
    cluster: local.name,
    etcd: [local.etcdEndpoint()],
    etcdAuth: null,
    etcdTls: null,
    api: cliApiCredentialsFromEnv() ?? local.apiCredentials(),
    apiTls: envApiTls(),
    source: `local cluster ${local.dir}`,
    localDir: local.dir,
  };
}

/** Finds the cluster a command is about; throws CLUSTER_NOT_FOUND saying how to name one. */
export async function resolveTarget(options: TargetOptions): Promise<ClusterTarget> {
  if (options.config !== undefined && options.dir !== undefined) {
    throw new PgwardenError('CONFIG_INVALID', '--config and --dir name two different clusters: pass only one of them');
  }
  if (options.config !== undefined) {
    const config = loadAgentConfig(options.config);
    return {
      cluster: config.cluster,
      etcd: config.etcd.endpoints,
      etcdAuth:
        config.etcd.username !== null && config.etcd.password !== null
          ? { username: config.etcd.username, password: config.etcd.password }
          : null,
      etcdTls: envEtcdTls() ?? loadEtcdTls(config.etcd.tls),
      api: cliApiCredentialsFromEnv() ?? { username: config.api.username, password: config.api.password },
      apiTls: envApiTls() ?? loadApiClientTls(config.api.tls),
      source: `--config ${path.resolve(options.config)}`,
      localDir: null,
    };
  }
  if (options.dir !== undefined) return localTarget(options.dir, true);
  const fromEnv = cliClusterFromEnv();
  if (fromEnv !== null) {
    return {
      cluster: fromEnv.cluster,
      etcd: fromEnv.etcd,
      etcdAuth: null,
      etcdTls: envEtcdTls(),
      api: cliApiCredentialsFromEnv(),
      apiTls: envApiTls(),
      source: 'PGWARDEN_ETCD/PGWARDEN_CLUSTER',
      localDir: null,
    };
  }
  if (existsSync(path.join(DEFAULT_DIR, FILES.cluster))) return localTarget(DEFAULT_DIR, false);
  throw new PgwardenError('CLUSTER_NOT_FOUND', `no cluster found: ${NOT_FOUND_HELP}`);
}

export function connectDcs(target: ClusterTarget): EtcdDcs {
  return new EtcdDcs({
    endpoints: target.etcd,
    cluster: target.cluster,
    username: target.etcdAuth?.username,
    password: target.etcdAuth?.password,
    callTimeoutMs: CLI_ETCD_TIMEOUT_MS,
    tls: target.etcdTls,
  });
}

/** Reads the cluster; a cluster etcd knows nothing about is CLUSTER_NOT_FOUND rather than an empty table. */
export async function loadCluster(dcs: EtcdDcs, target: ClusterTarget): Promise<ClusterView> {
  const view = await dcs.load();
  if (view.initialize === null && Object.keys(view.members).length === 0 && view.leader === null) {
    throw new PgwardenError(
      'CLUSTER_NOT_FOUND',
      `etcd at ${target.etcd.join(', ')} holds no cluster named "${target.cluster}" (from ${target.source}): check the cluster name, or start its agents`,
    );
  }
  return view;
}
