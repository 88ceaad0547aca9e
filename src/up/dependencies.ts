import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { PgwardenError } from '../errors.js';

export const ETCD_BIN = '/usr/bin/etcd';
export const PG_BIN_DIR = '/usr/lib/postgresql/15/bin';
export const PGBACKREST_BIN = '/usr/bin/pgbackrest';
export const INSTALL_COMMAND = 'apt-get install -y postgresql-15 etcd-server pgbackrest';

/** The PostgreSQL programs an agent runs. */
const PG_PROGRAMS = ['postgres', 'initdb', 'pg_ctl', 'pg_basebackup', 'pg_rewind', 'pg_controldata'];

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Throws DEPENDENCY_MISSING naming what is missing and the exact install command. */
export function checkDependencies(options: { etcdBin?: string; pgBinDir?: string; pgbackrestBin?: string } = {}): void {
  const etcdBin = options.etcdBin ?? ETCD_BIN;
  const pgBinDir = options.pgBinDir ?? PG_BIN_DIR;
  const pgbackrestBin = options.pgbackrestBin ?? PGBACKREST_BIN;
  const missing: string[] = [];
  const missingPg = PG_PROGRAMS.filter((p) => !executable(path.join(pgBinDir, p)));
  if (missingPg.length > 0) missing.push(`PostgreSQL 15 (${missingPg.map((p) => path.join(pgBinDir, p)).join(', ')})`);
  if (!executable(etcdBin)) missing.push(`etcd (${etcdBin})`);
  if (!executable(pgbackrestBin)) missing.push(`pgBackRest (${pgbackrestBin})`);
  if (missing.length === 0) return;
  const listed = missing.length > 1 ? `${missing.slice(0, -1).join(', ')} and ${missing[missing.length - 1]}` : missing[0];
  const sudo = typeof process.getuid === 'function' && process.getuid() !== 0 ? 'sudo ' : '';
  throw new PgwardenError(
    'DEPENDENCY_MISSING',
    `${listed} ${missing.length > 1 ? 'are' : 'is'} not installed: install ${missing.length > 1 ? 'them' : 'it'} with \`${sudo}${INSTALL_COMMAND}\` (Debian 12), then run the command again`,
  );
}
