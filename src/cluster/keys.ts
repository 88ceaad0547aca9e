/** Key names under `/pgwarden/<cluster>/` (docs/architecture.md "Keys in etcd"). */
export const KEYS = {
  initialize: 'initialize',
  config: 'config',
  leader: 'leader',
  members: 'members/',
  sync: 'sync',
  failover: 'failover',
  history: 'history',
  optime: 'optime',
  proxies: 'proxies/',
  drain: 'drain',
  shutdown: 'shutdown',
} as const;

export function clusterPrefix(cluster: string): string {
  return `/pgwarden/${cluster}/`;
}
