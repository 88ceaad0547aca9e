/**
 * How the CLI finds a cluster without a config file: PGWARDEN_ETCD (comma-separated endpoints) and
 * PGWARDEN_CLUSTER.
 */
import { PgwardenError } from '../errors.js';
import { clusterNameSchema, etcdEndpointsSchema } from './schema.js';
import { formatIssues } from './issues.js';
import { z } from 'zod';

type Env = Record<string, string | undefined>;

const DEFAULT_ETCD = ['http://127.0.0.1:2379'];

// Reuses the file's rules for the two fields, so the CLI and the agent accept exactly the same values.
const cliClusterSchema = z.strictObject({
  cluster: clusterNameSchema,
  etcd: etcdEndpointsSchema,
});

/**
 * The cluster named by the environment, or null when PGWARDEN_CLUSTER and PGWARDEN_ETCD are both unset.
 * PGWARDEN_ETCD defaults to http://127.0.0.1:2379; PGWARDEN_ETCD without PGWARDEN_CLUSTER is an error (there is no
 * way to tell which cluster is meant).
 */
export function cliClusterFromEnv(env: Env = process.env): { etcd: string[]; cluster: string } | null {
  const cluster = env.PGWARDEN_CLUSTER?.trim() || undefined;
  const etcdText = env.PGWARDEN_ETCD?.trim() || undefined;
  if (cluster === undefined && etcdText === undefined) return null;
  if (cluster === undefined) {
    throw new PgwardenError(
      'CLUSTER_NOT_FOUND',
      'PGWARDEN_ETCD is set but PGWARDEN_CLUSTER is not: set PGWARDEN_CLUSTER=<cluster name> too, or pass --config',
    );
  }
  const etcd =
    etcdText === undefined
      ? DEFAULT_ETCD
      : etcdText
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== '');
  const result = cliClusterSchema.safeParse({ cluster, etcd }, { reportInput: true });
  if (!result.success) {
    const message = formatIssues('the environment', cliClusterSchema, result.error.issues, {
      originOf: (path) => (path.startsWith('etcd') ? 'PGWARDEN_ETCD' : path === 'cluster' ? 'PGWARDEN_CLUSTER' : undefined),
    });
    throw new PgwardenError('CONFIG_INVALID', message);
  }
  return { cluster: result.data.cluster, etcd: result.data.etcd };
}
