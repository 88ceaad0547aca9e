/**
 * PostgreSQL parameters as a user sets them, in the agent file (postgresql.parameters) and in the dynamic settings
 * (postgresql.parameters, applied on every member): names PostgreSQL accepts, simple values, and none of the
 * settings pgwarden writes itself.
 */
import { z } from 'zod';
import { expecting } from './schema-messages.js';

/** PostgreSQL settings pgwarden writes itself; a user value would silently fight the agent. */
export const MANAGED_PG_PARAMETERS: Readonly<Record<string, string>> = {
  listen_addresses: 'set postgresql.listen in the agent file instead',
  port: 'set postgresql.listen in the agent file instead',
  data_directory: 'set postgresql.data_dir in the agent file instead',
  hba_file: 'pgwarden writes pg_hba.conf itself; allow more networks with postgresql.pg_hba_extra',
  ident_file: 'pgwarden writes the configuration files itself',
  config_file: 'pgwarden writes the configuration files itself',
  primary_conninfo: 'pgwarden points replicas at the current leader itself',
  primary_slot_name: 'pgwarden manages replication slots itself',
  synchronous_standby_names: 'pgwarden manages it; set synchronous_mode and synchronous_node_count instead',
};

const PG_PARAMETER_NAME = /^[A-Za-z_][A-Za-z0-9_.]*$/;

export const pgParametersSchema = z
  .record(
    z.string().regex(PG_PARAMETER_NAME, {
      error: 'a PostgreSQL parameter name has letters, digits, "_" and "." only, like work_mem',
    }),
    z.union([z.string(), z.number(), z.boolean()], expecting('a string, number or boolean like 64MB, 100 or on')),
    expecting('a mapping of PostgreSQL parameters like {work_mem: 64MB}'),
  )
  .superRefine((parameters, ctx) => {
    for (const name of Object.keys(parameters)) {
      const why = MANAGED_PG_PARAMETERS[name.toLowerCase()];
      if (why !== undefined) {
        ctx.addIssue({ code: 'custom', path: [name], message: `is managed by pgwarden: remove it (${why})` });
      }
    }
  });

export type PgParameters = z.output<typeof pgParametersSchema>;
