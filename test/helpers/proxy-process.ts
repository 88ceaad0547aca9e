/** A real `pgwarden proxy` process for tests (built CLI from dist/), with its output collected. */
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { waitFor } from './pg.js';

const REPO = path.resolve(import.meta.dirname, '../../..');

export interface ProxyProcess {
  readonly child: ChildProcess;
  /** Everything it printed so far (stdout and stderr). */
  log(): string;
  /** SIGKILL if it still runs, and waits for the exit. */
  kill(): Promise<void>;
}

/** Starts `pgwarden proxy --config <file> --primary 127.0.0.1:<port>` and waits until its log matches `listening`. */
export async function startProxyProcess(configFile: string, primaryPort: number, listening = /proxy listening/): Promise<ProxyProcess> {
  const child = spawn(process.execPath, [path.join(REPO, 'dist/src/cli/main.js'), 'proxy', '--config', configFile, '--primary', `127.0.0.1:${primaryPort}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const proxy: ProxyProcess = {
    child,
    log: () => log,
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
    },
  };
  try {
    await waitFor('the proxy process to listen', async () => {
      if (child.exitCode !== null) throw new Error(`the proxy exited ${child.exitCode}: ${log}`);
      return listening.test(log) || undefined;
    }, 20_000);
  } catch (e) {
    await proxy.kill();
    throw e;
  }
  return proxy;
}
