/** Command-line options of the bench scripts: Node's parseArgs, with a one-line error instead of a stack trace. */
import { parseArgs, type ParseArgsConfig } from 'node:util';

export function parseBenchArgs<T extends ParseArgsConfig>(script: string, config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (e) {
    process.stderr.write(`${script}: ${e instanceof Error ? e.message : String(e)}\n(npm run ${script} -- --help lists the options)\n`);
    process.exit(2);
  }
}
