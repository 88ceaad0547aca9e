import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import YAML from 'yaml';
import { PgwardenError } from '../errors.js';

export interface YamlFile {
  /** The parsed document as plain values, for a zod schema to validate. */
  raw: unknown;
  /** "config file /abs/path", for messages. */
  source: string;
  /** Relative paths inside the file are taken from here. */
  baseDir: string;
}

/**
 * Reads a YAML configuration file. CONFIG_NOT_FOUND when it does not exist (`whatToCreate` says what a
 * minimal file holds), CONFIG_INVALID when it cannot be read or is not valid YAML (with line and column).
 */
export function readYamlFile(path: string, whatToCreate: string): YamlFile {
  const file = resolve(path);
  const source = `config file ${file}`;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new PgwardenError(
        'CONFIG_NOT_FOUND',
        `config file ${file} does not exist: check the --config path, or create the file (${whatToCreate})`,
        { cause: e },
      );
    }
    throw new PgwardenError(
      'CONFIG_INVALID',
      `${source} could not be read (${code ?? (e as Error).message}): check that it is a file readable by this user`,
      { cause: e },
    );
  }
  const document = YAML.parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (document.errors.length > 0) {
    const first = document.errors[0]!;
    const where = first.linePos?.[0] ? ` at line ${first.linePos[0].line}, column ${first.linePos[0].col}` : '';
    throw new PgwardenError(
      'CONFIG_INVALID',
      `${source} is not valid YAML${where}: ${first.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}. Fix the syntax there (indent with spaces, "key: value")`,
    );
  }
  return { raw: document.toJS(), source, baseDir: dirname(file) };
}
