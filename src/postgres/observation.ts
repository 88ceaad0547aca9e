/** What the agent observes of its own PostgreSQL (see PostgresServer.observe). */
import type { Lsn } from '../cluster/types.js';

/** pg_controldata's "Database cluster state". */
export type ControlState =
  | 'starting up'
  | 'shut down'
  | 'shut down in recovery'
  | 'shutting down'
  | 'in crash recovery'
  | 'in archive recovery'
  | 'in production';

/** One row of pg_stat_replication on a primary. */
export interface ReplicationPeer {
  /** application_name, which pgwarden sets to the member name. */
  name: string;
  state: string;
  syncState: 'async' | 'potential' | 'sync' | 'quorum' | string;
  flushLsn: Lsn | null;
  replayLsn: Lsn | null;
}

/** What the agent observed of its own PostgreSQL this cycle. */
export interface PgObservation {
  dataDir: 'missing' | 'empty' | 'initialized';
  /** The postmaster process is alive. */
  running: boolean;
  /** It answered a query this cycle. */
  accepting: boolean;
  inRecovery: boolean | null;
  timeline: number | null;
  systemId: string | null;
  /** primary: pg_current_wal_lsn(); replica: max(receive, replay). */
  walPosition: Lsn | null;
  receiveLsn: Lsn | null;
  replayLsn: Lsn | null;
  /** From pg_controldata, read when PostgreSQL is not running. */
  controlState: ControlState | null;
  /** pg_control's "Latest checkpoint's TimeLineID": pg_controldata when stopped, pg_control_checkpoint() when running. */
  controlTimeline: number | null;
  /**
   * pg_controldata's "Latest checkpoint location", read when PostgreSQL is not running. After a clean shutdown
   * (controlState 'shut down') it is where the shutdown checkpoint record starts, and that record ends the WAL.
   */
  checkpointLsn: Lsn | null;
  /** The member this server is configured to follow (primary_conninfo), as pgwarden last wrote it. */
  following: string | null;
  /** The WAL receiver is connected and streaming. */
  streaming: boolean;
  /** Members named in synchronous_standby_names as pgwarden last wrote it; ['*'] in strict mode with none. */
  synchronousStandbyNames: string[];
  /** pg_stat_replication on a primary. */
  replication: ReplicationPeer[];
  /** Physical replication slots present. */
  slots: string[];
  pendingRestart: boolean;
}
