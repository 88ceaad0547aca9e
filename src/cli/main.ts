#!/usr/bin/env node
/**
 * The `pgwarden` executable. Errors end the process with exit code 1 and one message on stderr saying what
 * happened and what to do; never a stack trace.
 */
import { isPgwardenError } from '../errors.js';
import { ignoreOutputErrors, terminalIo, writeQuietly } from './io.js';
import { buildProgram } from './program.js';

function report(e: unknown): void {
  let message: string;
  if (isPgwardenError(e)) message = `${e.message} [${e.code}]`;
  else if (e instanceof Error) message = `${e.message} (unexpected error: please report it with the command you ran)`;
  else message = String(e);
  writeQuietly(process.stderr, `error: ${message}\n`);
}

// `pgwarden list | head` closes the pipe early, `npm start | tee` loses its reader at Ctrl-C: the command goes on
// (`up` must still stop its cluster) and simply prints no more.
ignoreOutputErrors();

try {
  await buildProgram(terminalIo()).parseAsync(process.argv);
} catch (e) {
  report(e);
  process.exitCode = 1;
}
