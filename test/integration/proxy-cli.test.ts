/**
 * `pgwarden proxy` as a real process without a config file, as the README shows it:
 * `pgwarden proxy --primary host:port --replica host:port --auth-file userlist.txt`, logged into with node-postgres
 * through both listeners against real PostgreSQL 15 servers (the second one stands in for a replica: the ro
 * listener sends to whatever is given as --replica); SCRAM is enforced; `--help` and the errors of missing options.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { PostgresServer } from '../../src/postgres/server.js';
import { cleanupServers, makePgTempDir, makeTestServer, testCredentials, waitFor } from '../helpers/pg.js';
import { freePort } from '../helpers/ports.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[], cwd?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [MAIN, ...args], { cwd, timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
    child.stdin?.end();
  });
}

describe('pgwarden proxy without a config file', { timeout: 120_000 }, () => {
  const credentials = testCredentials();
  const user = credentials.superuser.username;
  const password = credentials.superuser.password;
  let base: string;
  let primary: PostgresServer;
  let replica: PostgresServer;
  let child: ChildProcess | null = null;
  let output = '';

  before(async () => {
    base = await makePgTempDir('pgwarden-proxy-cli-');
    primary = await makeTestServer('primary', base, credentials);
    replica = await makeTestServer('replica', base, credentials);
    await Promise.all([primary.bootstrap(), replica.bootstrap()]);
    await writeFile(path.join(base, 'userlist.txt'), `"${user}" "${password}"\n`);
  });

  after(async () => {
    if (child !== null && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child!.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
    await cleanupServers();
  });

  it('--help explains the options and both ways to run, with no "comes later"', async () => {
    const run = await cli(['proxy', '--help']);
    assert.equal(run.code, 0, run.stderr);
    for (const option of ['--config <file>', '--primary <host:port>', '--replica <host:port>', '--auth-file <file>', '--listen <host:port>', '--listen-ro <host:port>', '--pool-mode <mode>', '--admin-user <user>']) {
      assert.ok(run.stdout.includes(option), `--help lacks ${option}:\n${run.stdout}`);
    }
    assert.match(run.stdout, /pgwarden proxy --primary 10\.0\.0\.1:5432 \[--replica 10\.0\.0\.2:5432 …\] --auth-file userlist\.txt/);
    assert.match(run.stdout, /127\.0\.0\.1:6432/);
    assert.match(run.stdout, /SCRAM-SHA-256/);
    assert.doesNotMatch(run.stdout, /comes later/);
  });

  it('names the missing option, on stderr with exit code 1 and no stack trace', async () => {
    const none = await cli(['proxy']);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /^error: pgwarden proxy needs --primary host:port \(and --auth-file FILE\), or --config proxy\.yml/);
    const noUsers = await cli(['proxy', '--primary', `127.0.0.1:${primary.port}`]);
    assert.equal(noUsers.code, 1);
    assert.match(noUsers.stderr, /needs --auth-file FILE/);
    const both = await cli(['proxy', '--config', 'proxy.yml', '--auth-file', 'userlist.txt']);
    assert.equal(both.code, 1);
    assert.match(both.stderr, /--auth-file cannot be combined with --config/);
    for (const run of [none, noUsers, both]) assert.doesNotMatch(run.stderr, /\n\s+at .+:\d+:\d+/);
  });

  it('serves the primary on --listen and the replica on --listen-ro, with SCRAM logins from --auth-file', async () => {
    const rw = await freePort();
    const ro = await freePort();
    child = spawn(
      process.execPath,
      [MAIN, 'proxy', '--primary', `127.0.0.1:${primary.port}`, '--replica', `127.0.0.1:${replica.port}`, '--auth-file', 'userlist.txt', '--listen', `127.0.0.1:${rw}`, '--listen-ro', `127.0.0.1:${ro}`],
      { cwd: base, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    await waitFor('the proxy process to listen', async () => {
      if (child!.exitCode !== null) throw new Error(`the proxy exited ${child!.exitCode}: ${output}`);
      return /proxy listening/.test(output) || undefined;
    }, 20_000);
    const portVia = async (port: number): Promise<number> => {
      const c = new pg.Client({ host: '127.0.0.1', port, user, password, database: 'postgres' });
      await c.connect();
      try {
        return (await c.query('select inet_server_port() as port')).rows[0].port as number;
      } finally {
        await c.end();
      }
    };
    assert.equal(await portVia(rw), primary.port, 'rw reaches the primary');
    assert.equal(await portVia(ro), replica.port, 'ro reaches the replica');
    // SCRAM, not trust: a wrong password is refused.
    const wrong = new pg.Client({ host: '127.0.0.1', port: rw, user, password: 'not-the-password', database: 'postgres' });
    wrong.on('error', () => undefined);
    await assert.rejects(wrong.connect(), (e: { code?: string }) => e.code === '28P01');
    const listening = output.split('\n').find((l) => l.includes('proxy listening'));
    assert.ok(listening && listening.includes(`"port":${rw}`) && listening.includes(`"port":${ro}`), listening);
    // SIGTERM ends it cleanly.
    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  });
});
