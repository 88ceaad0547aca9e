/**
 * The CLI's terminal: output lines and confirmations. Commands print through this so that the confirmation
 * rule (ask on a terminal, refuse without --force otherwise) lives in one place.
 */
import { createInterface } from 'node:readline/promises';
import { PgwardenError } from '../errors.js';

export interface Io {
  /** A line (or block) on stdout. */
  out(text: string): void;
  /** A line on stderr (progress that must not mix with machine-readable stdout). */
  err(text: string): void;
  /** stdin is a terminal a person can answer on. */
  readonly interactive: boolean;
  /** Asks a question on the terminal and returns the answer. */
  ask(question: string): Promise<string>;
}

/**
 * Writes `text` unless the stream is gone. A reader that went away (`| head`, `| tee` ended by the same Ctrl-C,
 * a closed terminal) must never stop the command: `pgwarden up` still has a cluster to stop when that happens.
 */
export function writeQuietly(stream: NodeJS.WriteStream, text: string): void {
  if (stream.destroyed || !stream.writable) return;
  try {
    stream.write(text);
  } catch {
    // A synchronous write to a closed descriptor: the same lost reader.
  }
}

/**
 * Write errors on stdout and stderr (EPIPE, EIO) end that stream's output, never the process: without a listener
 * Node would throw them from an event, i.e. exit without running any cleanup.
 */
export function ignoreOutputErrors(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', () => {
      stream.destroy();
    });
  }
}

export function terminalIo(): Io {
  return {
    out: (text) => writeQuietly(process.stdout, `${text}\n`),
    err: (text) => writeQuietly(process.stderr, `${text}\n`),
    interactive: process.stdin.isTTY === true,
    async ask(question) {
      const rl = createInterface({ input: process.stdin, output: process.stdout });
      try {
        return await rl.question(question);
      } finally {
        rl.close();
      }
    },
  };
}

/**
 * Goes ahead when --force was given or the person answers yes; throws NOT_CONFIRMED otherwise. Without a
 * terminal there is nobody to ask, so the command refuses and says to pass --force.
 */
export async function confirm(io: Io, question: string, options: { force: boolean; what: string }): Promise<void> {
  if (options.force) return;
  if (!io.interactive) {
    throw new PgwardenError(
      'NOT_CONFIRMED',
      `not ${options.what} without confirmation: stdin is not a terminal, so nobody can answer; pass --force to confirm`,
    );
  }
  const answer = (await io.ask(`${question} [y/N] `)).trim().toLowerCase();
  if (answer !== 'y' && answer !== 'yes') {
    throw new PgwardenError('NOT_CONFIRMED', `aborted: nothing was changed (answer "y" to go ahead, or pass --force)`);
  }
}
