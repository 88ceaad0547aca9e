/**
 * The `pgwarden` command line: commander wiring only. Each action parses its options and calls a command
 * function (commands.ts, local.ts, agent.ts) that does the work.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { DEFAULT_DIR, parseFormat, parseSeconds, type OutputFormat } from './options.js';
import type { Io } from './io.js';

const FINDING_THE_CLUSTER = `
The cluster is found from --config FILE (an agent's YAML file), --dir DIR (a local cluster made by
\`pgwarden up\`), the environment (PGWARDEN_ETCD=http://host:2379 and PGWARDEN_CLUSTER=name), or else
the local cluster in ./${DEFAULT_DIR}. REST calls (restart, reload, reinit) use the agents' API credentials
from --config or --dir, or PGWARDEN_API_USER and PGWARDEN_API_PASSWORD.`;

/** The command modules load the etcd client (slow to import): only when a command runs. */
const commands = () => import('./commands.js');

/** The version of the package this file was built from (dist/src/cli → the package root). */
function packageVersion(): string {
  try {
    const text = readFileSync(new URL('../../../package.json', import.meta.url), 'utf8');
    return (JSON.parse(text) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

interface ClusterOpts {
  config?: string;
  dir?: string;
}

function withClusterOptions(command: Command): Command {
  return command
    .option('-c, --config <file>', "an agent's YAML file: use its etcd endpoints, cluster name and API credentials")
    .option('-d, --dir <dir>', `a local cluster made by \`pgwarden up --dir\` (default: ./${DEFAULT_DIR} when it exists)`)
    .addHelpText('after', FINDING_THE_CLUSTER);
}

function formatOption(): Option {
  return new Option('-f, --format <format>', 'output format: table or json').default('table').argParser(parseFormat as (v: string) => OutputFormat);
}

function secondsOption(flags: string, description: string, defaultSeconds: number): Option {
  return new Option(flags, description).default(defaultSeconds).argParser((v: string) => parseSeconds(v, flags.split(' ')[0]));
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a whole number like 3.');
  return n;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function buildProgram(io: Io): Command {
  const program = new Command('pgwarden')
    .description('PostgreSQL high availability: per-host agents decide failover through etcd.\nRun `pgwarden up` for a local 3-node cluster, then `pgwarden list`.')
    .version(packageVersion(), '-V, --version', 'print the version')
    .showSuggestionAfterError(true)
    .showHelpAfterError('(add --help for more information)')
    .configureHelp({ sortSubcommands: false, showGlobalOptions: false });

  withClusterOptions(
    program
      .command('list')
      .alias('ls')
      .description('show the members: role, state, timeline, replication lag and the last reason of each agent')
      .addOption(formatOption())
      .addHelpText(
        'after',
        `
--format json prints {"cluster": …, "members": [{"name", "role" ("primary"|"replica"), "state", "host", "port",
"api_url", "timeline", "lag_bytes", "reason"}, …], "proxies": [{"id", "rw", "ro", "admin" (the console's libpq URL),
"metrics" (the Prometheus URL or null), "unreachable", "updated_at"}, …]} for scripts.`,
      ),
  ).action(async (opts: ClusterOpts & { format: OutputFormat }) => (await commands()).listCommand(io, opts));

  withClusterOptions(
    program
      .command('switchover')
      .description('move the primary role to a healthy replica without losing commits (planned maintenance)')
      .option('--primary <member>', 'the current primary (refused if it is not the leader)')
      .option('--candidate <member>', 'the replica to promote (default: the most advanced eligible replica)')
      .option('--scheduled <time>', 'when: an ISO time like 2026-11-21T10:00 (local time; Z or +01:00 for a zone) or "now"')
      .option('--force', 'do not ask for confirmation', false)
      .addOption(secondsOption('--timeout <seconds>', 'how long to wait for the new primary', 60))
      .addOption(formatOption())
      .addHelpText(
        'after',
        `
Writes a switchover request to etcd; the primary's agent shuts PostgreSQL down cleanly and releases the leader
key, and the candidate promotes. The command waits until the new primary holds the leader key and runs, printing
progress, then prints the members. The candidate must be a running replica without the nofailover tag, within
maximum_lag_on_failover, and a synchronous standby in synchronous mode; a paused cluster refuses switchovers.`,
      ),
  ).action(async (opts: ClusterOpts & { primary?: string; candidate?: string; scheduled?: string; force: boolean; timeout: number; format: OutputFormat }) =>
    (await commands()).failoverCommand(io, { ...opts, kind: 'switchover', timeoutSec: opts.timeout }),
  );

  withClusterOptions(
    program
      .command('failover')
      .description('promote a replica now, also when the primary is down (unplanned; no lag check for the candidate)')
      .option('--candidate <member>', 'the replica to promote (required when no member holds the leader key)')
      .option('--force', 'do not ask for confirmation', false)
      .addOption(secondsOption('--timeout <seconds>', 'how long to wait for the new primary', 60))
      .addOption(formatOption())
      .addHelpText(
        'after',
        `
Writes a failover request to etcd and waits for the new primary. Unlike a switchover, the candidate may
be promoted even if it lags (recent commits can be lost): prefer \`pgwarden switchover\` while the primary runs.`,
      ),
  ).action(async (opts: ClusterOpts & { candidate?: string; force: boolean; timeout: number; format: OutputFormat }) =>
    (await commands()).failoverCommand(io, { ...opts, kind: 'failover', timeoutSec: opts.timeout }),
  );

  for (const pause of [true, false]) {
    withClusterOptions(
      program
        .command(pause ? 'pause' : 'resume')
        .description(
          pause
            ? 'maintenance mode: the agents stop acting (no failover, no restarts) while PostgreSQL keeps running'
            : 'end maintenance mode: the agents act again',
        )
        .option('--wait', `wait until every member reports it is ${pause ? 'paused' : 'active'}`, false)
        .addOption(secondsOption('--timeout <seconds>', 'how long --wait waits', 30)),
    ).action(async (opts: ClusterOpts & { wait: boolean; timeout: number }) =>
      (await commands()).pauseCommand(io, { ...opts, pause, timeoutSec: opts.timeout }),
    );
  }

  withClusterOptions(
    program
      .command('reinit')
      .argument('<member>', 'the replica to rebuild')
      .description("wipe a replica's data directory and clone it again from the primary")
      .option('--force', 'do not ask for confirmation', false)
      .addHelpText('after', "\nAsks the member's agent through its REST API (POST /reinitialize); the primary is refused."),
  ).action(async (member: string, opts: ClusterOpts & { force: boolean }) =>
    (await commands()).memberRequestCommand(io, { ...opts, action: 'reinitialize', members: [member] }),
  );

  withClusterOptions(
    program
      .command('restart')
      .argument('<members...>', 'the members whose PostgreSQL restarts')
      .description('restart PostgreSQL on the named members (their agents do it in their next cycle)')
      .option('--pending', 'only where a changed parameter needs a restart', false)
      .option('--force', 'do not ask for confirmation', false)
      .addHelpText('after', "\nAsks each member's agent through its REST API (POST /restart).\nExample: pgwarden restart pg2 pg3 --force"),
  ).action(async (members: string[], opts: ClusterOpts & { pending: boolean; force: boolean }) =>
    (await commands()).memberRequestCommand(io, { ...opts, action: 'restart', members }),
  );

  withClusterOptions(
    program
      .command('reload')
      .argument('<members...>', 'the members whose PostgreSQL rereads its configuration')
      .description('reload the PostgreSQL configuration on the named members')
      .option('--force', 'do not ask for confirmation', false)
      .addHelpText('after', "\nAsks each member's agent through its REST API (POST /reload)."),
  ).action(async (members: string[], opts: ClusterOpts & { force: boolean }) =>
    (await commands()).memberRequestCommand(io, { ...opts, action: 'reload', members }),
  );

  withClusterOptions(
    program
      .command('history')
      .description('the timeline switches: timeline, LSN of the switch, time, reason and the new leader')
      .addOption(formatOption()),
  ).action(async (opts: ClusterOpts & { format: OutputFormat }) => (await commands()).historyCommand(io, opts));

  withClusterOptions(
    program
      .command('show-config')
      .description("print the cluster's dynamic configuration (etcd key `config`)")
      .addOption(new Option('-f, --format <format>', 'output format: yaml or json').default('yaml').choices(['yaml', 'json'])),
  ).action(async (opts: ClusterOpts & { format: 'yaml' | 'json' }) =>
    (await commands()).showConfigCommand(io, { ...opts, format: opts.format === 'json' ? 'json' : 'table' }),
  );

  withClusterOptions(
    program
      .command('edit-config')
      .description('change dynamic settings: shows the difference, asks, and writes it to etcd')
      .option('-s, --set <key=value>', 'a setting to change (repeatable); the value null restores the default', collect, [] as string[])
      .option('--force', 'do not ask for confirmation', false)
      .addHelpText(
        'after',
        `
Examples:
  pgwarden edit-config --set maximum_lag_on_failover=2097152
  pgwarden edit-config --set synchronous_mode=true --set postgresql.parameters.work_mem=64MB --force`,
      ),
  ).action(async (opts: ClusterOpts & { set: string[]; force: boolean }) => (await commands()).editConfigCommand(io, opts));

  program
    .command('up')
    .description('run a local cluster on this machine: etcd and one agent + PostgreSQL per node, on free loopback ports')
    .option('-n, --nodes <count>', 'number of nodes of a new cluster (default 3)', positiveInt)
    .option('-d, --dir <dir>', 'where the cluster lives (ports, passwords, data, logs)', DEFAULT_DIR)
    .option('--detach', 'leave the cluster running in the background and return', false)
    .addOption(secondsOption('--timeout <seconds>', 'how long to wait for a healthy cluster', 180))
    .addHelpText(
      'after',
      `
Runs in the foreground until Ctrl-C (or SIGTERM, SIGHUP), which stops the proxy, the agents (replicas first),
PostgreSQL and etcd; with --detach it returns once the cluster is healthy. Either way etcd, an agent or the proxy
that exits is started again (at once, then after 100 ms doubling up to 30 s while it keeps exiting), and each
restart is logged in <dir>/supervisor.log; with --detach a background \`pgwarden supervise\` process does it,
which \`pgwarden down\` stops first. Running it again on the same --dir starts the same cluster with its data.
Needs PostgreSQL 15 and etcd: apt-get install -y postgresql-15 etcd-server`,
    )
    .action(async (opts: { nodes?: number; dir: string; detach: boolean; timeout: number }) =>
      (await import('./local.js')).upCommand(io, { dir: opts.dir, nodes: opts.nodes, detach: opts.detach, timeoutSec: opts.timeout }),
    );

  program
    .command('down')
    .description('stop a local cluster started by `pgwarden up` (its data is kept); returns once every process is gone')
    .option('-d, --dir <dir>', 'the directory given to `pgwarden up`', DEFAULT_DIR)
    .action(async (opts: { dir: string }) => (await import('./local.js')).downCommand(io, opts));

  program
    .command('agent')
    .description("run the agent that manages this host's PostgreSQL (what a systemd unit or container runs)")
    .requiredOption('-c, --config <file>', "the agent's YAML file")
    .action(async (opts: { config: string }) => (await import('./agent.js')).runAgent(opts.config));

  program
    .command('proxy')
    .description('run the connection pooler in the foreground (follows the cluster when the config has etcd:, else a fixed primary like PgBouncer)')
    .option('-c, --config <file>', "the proxy's YAML file (listen, pool_mode, auth_file, etcd, ...); every setting, RELOAD and SIGHUP")
    .option('--primary <host:port>', 'the PostgreSQL server read-write connections go to (overrides primary in the file)')
    .option('--replica <host:port>', 'a replica for the read-only listener (repeatable; overrides replicas in the file)', collect, [])
    .option('--auth-file <file>', 'without --config: the userlist clients log in with, PgBouncer\'s format ("user" "password-or-SCRAM-secret" lines)')
    .option('--listen <host:port>', 'without --config: where clients connect (default 127.0.0.1:6432)')
    .option('--listen-ro <host:port>', 'without --config: the read-only listener, balanced over the replicas (default with --replica: the --listen port + 1)')
    .addOption(new Option('--pool-mode <mode>', 'without --config: transaction (default) or session').choices(['transaction', 'session']))
    .option('--admin-user <user>', 'without --config: a user allowed on the admin console (database pgwarden or pgbouncer; repeatable)', collect, [])
    .addHelpText(
      'after',
      `
Two ways to run it:
  pgwarden proxy --config proxy.yml
      every setting from the file (see docs/proxy.md); with etcd: in it the proxy follows the cluster's primary
      and replicas. RELOAD on the admin console and SIGHUP re-read the file.
  pgwarden proxy --primary 10.0.0.1:5432 [--replica 10.0.0.2:5432 …] --auth-file userlist.txt
      no file needed: clients connect to --listen (127.0.0.1:6432) and reach the primary, any database name
      passing through (PgBouncer's "* = host=… port=…"); with --replica a read-only listener (--listen-ro,
      default the next port, 6433) balances over the replicas. Clients authenticate with SCRAM-SHA-256 against the users in --auth-file (trust is never a
      default). Everything else has the config file's defaults (pool size 20, max_client_conn 1000, ...);
      RELOAD and SIGHUP need --config.`,
    )
    .action(
      async (opts: { config?: string; primary?: string; replica: string[]; authFile?: string; listen?: string; listenRo?: string; poolMode?: 'transaction' | 'session'; adminUser: string[] }) =>
        (await import('../proxy/run.js')).runProxy(opts),
    );

  // Started by `pgwarden up --detach` (see src/up/supervise.ts); not for people, so not listed in --help.
  program
    .command('supervise', { hidden: true })
    .requiredOption('-d, --dir <dir>')
    .action(async (opts: { dir: string }) => (await import('../up/supervise.js')).runSupervisorDaemon(opts.dir));

  // Started by the agent itself (see src/ha/deadman.ts); not for people, so not listed in --help.
  program
    .command('deadman', { hidden: true })
    .requiredOption('--run-dir <dir>')
    .requiredOption('--data-dir <dir>')
    .action(async (opts: { runDir: string; dataDir: string }) => (await import('../ha/deadman.js')).runDeadman(opts.runDir, opts.dataDir));

  return program;
}
