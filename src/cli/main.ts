#!/usr/bin/env node
/**
 * The `pgwarden` executable. Errors end the process with exit code 1 and one message on stderr saying what
 * happened and what to do; never a stack trace.
 */
import { isPgwardenError } from '../errors.js';
import { terminalIo } from './io.js';
import { buildProgram } from './program.js';

function report(e: unknown): void {
  let message: string;
  if (isPgwardenError(e)) message = `${e.message} [${e.code}]`;
  else if (e instanceof Error) message = `${e.message} (unexpected error: please report it with the command you ran)`;
  else message = String(e);
  process.stderr.write(`error: ${message}\n`);
}

// `pgwarden list | head` closes the pipe early: that is not an error worth a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
}

try {
  await buildProgram(terminalIo()).parseAsync(process.argv);
} catch (e) {
  report(e);
  process.exitCode = 1;
}
