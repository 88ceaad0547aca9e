/**
 * The dynamic settings kept in etcd's `config` key (they change at run time, with `edit-config` or the REST API).
 * One schema holds each field's rule, default and meaning; the type, the defaults, the partial form written in
 * bootstrap.dcs and etcd's field-by-field reading (src/dcs/codec.ts) all come from it.
 */
import { z } from 'zod';
import { describeValue, expecting } from './schema-messages.js';
import { pgParametersSchema } from './pg-parameters.js';
import { backupSettingsSchema } from './backup-settings.js';

const seconds = (example: number) => z.number(expecting(`a number of seconds like ${example}`));
const trueOrFalse = () => z.boolean(expecting('true or false'));
const zeroOrMoreSeconds = { error: (i: { input?: unknown }) => `must be 0 or more seconds; got ${describeValue(i.input)}` };

/** Each field with its rule and its default. */
const dynamicConfigFields = {
  /** Leader lease time-to-live, seconds. */
  ttl: seconds(5)
    .min(2, {
      error: (i) => `must be at least 2 seconds (a shorter leader lease expires under ordinary etcd latency); got ${describeValue(i.input)}`,
    })
    .default(5),
  /** Seconds between HA loop cycles. */
  loop_wait: seconds(1)
    .min(0.1, { error: (i) => `must be at least 0.1 seconds; got ${describeValue(i.input)}` })
    .default(1),
  /** Seconds an etcd or PostgreSQL call may take before it counts as failed. */
  retry_timeout: seconds(2)
    .positive({ error: (i) => `must be more than 0 seconds, like 2; got ${describeValue(i.input)}` })
    .default(2),
  /** A replica lagging more than this many bytes is never promoted. */
  maximum_lag_on_failover: z
    .number(expecting('a number of bytes like 1048576'))
    .int({ error: (i) => `must be a whole number of bytes like 1048576; got ${describeValue(i.input)}` })
    .min(0, { error: (i) => `must be 0 or more bytes; got ${describeValue(i.input)}` })
    .default(1024 * 1024),
  synchronous_mode: trueOrFalse().default(false),
  synchronous_mode_strict: trueOrFalse().default(false),
  synchronous_node_count: z
    .number(expecting('a whole number like 1'))
    .int({ error: (i) => `must be a whole number like 1; got ${describeValue(i.input)}` })
    .min(1, { error: (i) => `must be at least 1; got ${describeValue(i.input)}` })
    .default(1),
  /** Maintenance: agents stop acting, PostgreSQL keeps running. */
  pause: trueOrFalse().default(false),
  /** Seconds a member may be absent before its replication slot is dropped. */
  member_slots_ttl: seconds(1800).min(0, zeroOrMoreSeconds).default(1800),
  /**
   * Seconds a former primary that shut down cleanly with the whole cluster (see CleanShutdown) has to come back
   * after a restart before the replicas elect one of them, counted from each replica agent's first cycle.
   */
  primary_start_timeout: seconds(30).min(0, zeroOrMoreSeconds).default(30),
  /** PostgreSQL parameters applied on every member. */
  postgresql: z
    // prefault (not default) runs {} through the schema, so the nested parameters default applies too.
    .strictObject({ parameters: pgParametersSchema.prefault({}) }, expecting('a mapping like {parameters: {work_mem: 64MB}}'))
    .prefault({}),
  /**
   * Seconds a primary handing over (switchover) waits for the live proxies to finish their in-flight
   * transactions before it shuts down anyway.
   */
  drain_timeout: seconds(5).min(0, zeroOrMoreSeconds).default(5),
  /**
   * Seconds every live proxy must have reported the primary's PostgreSQL unreachable, while a replica stays
   * reachable to all of them, before the primary hands over to that replica (a partition between the primary and
   * the proxies only, which etcd and the replicas cannot see); 0 turns this off.
   */
  proxy_unreachable_timeout: seconds(3)
    .min(0, { error: (i) => `must be 0 (off) or more seconds; got ${describeValue(i.input)}` })
    .default(3),
  /** Backups and WAL archiving with pgBackRest (src/cluster/backup-settings.ts); null, the default, is off. */
  backup: backupSettingsSchema.nullable().default(null),
};

interface Timings {
  ttl?: unknown;
  loop_wait?: unknown;
  retry_timeout?: unknown;
}

/**
 * The cross-field timing rules. A leader refreshes its lease every loop_wait and may spend up to retry_timeout on
 * a refresh that fails and once more on the retry, so the lease must outlive loop_wait + 2 * retry_timeout.
 */
function checkTimings(config: Timings, ctx: z.core.$RefinementCtx<unknown>): void {
  const { ttl, loop_wait: loopWait, retry_timeout: retryTimeout } = config;
  // Fields that already failed their own rule were reported; a cross-field complaint on top would only add noise.
  if (typeof ttl !== 'number' || !(ttl >= 2)) return;
  if (typeof loopWait !== 'number' || !(loopWait >= 0.1)) return;
  if (typeof retryTimeout !== 'number' || !(retryTimeout > 0)) return;
  if (!(loopWait < ttl)) {
    ctx.addIssue({
      code: 'custom',
      path: ['loop_wait'],
      message: `must be less than ttl (${ttl}); got ${loopWait}: lower loop_wait or raise ttl`,
    });
    return;
  }
  const needed = loopWait + 2 * retryTimeout;
  if (ttl < needed) {
    ctx.addIssue({
      code: 'custom',
      path: ['ttl'],
      message:
        `must be at least loop_wait + 2 * retry_timeout = ${loopWait} + 2 * ${retryTimeout} = ${needed} seconds ` +
        `(got ${ttl}), so a leader can miss one refresh and retry before its lease expires: ` +
        `raise ttl to ${needed} or lower loop_wait / retry_timeout`,
    });
  }
}

const DYNAMIC_SETTINGS_EXAMPLE = 'a mapping of dynamic settings like {ttl: 5, loop_wait: 1}';

/** The complete dynamic settings: unknown keys are refused, missing ones take their defaults. */
export const dynamicConfigSchema = z
  .strictObject(dynamicConfigFields, expecting(DYNAMIC_SETTINGS_EXAMPLE))
  .superRefine((config, ctx) => checkTimings(config, ctx));

/** Dynamic settings kept in etcd's `config` key; they change at run time. */
export type DynamicConfig = z.output<typeof dynamicConfigSchema>;

/** Every field at its default (what an empty `config` key means). */
export const DEFAULT_DYNAMIC_CONFIG: DynamicConfig = dynamicConfigSchema.parse({});

type WithoutDefault<S> = S extends z.ZodDefault<infer T> ? T : S extends z.ZodPrefault<infer T> ? T : S;

function withoutDefault<S extends z.ZodType>(schema: S): WithoutDefault<S> {
  return (schema instanceof z.ZodDefault || schema instanceof z.ZodPrefault ? schema.unwrap() : schema) as WithoutDefault<S>;
}

type PartialFields = { [K in keyof typeof dynamicConfigFields]: z.ZodOptional<WithoutDefault<(typeof dynamicConfigFields)[K]>> };

/**
 * Some dynamic settings, each optional and without its default filled in (bootstrap.dcs: what the agent file
 * sets over the defaults); the timing rules apply to the result with the defaults.
 */
export const partialDynamicConfigSchema = z
  .strictObject(
    Object.fromEntries(
      Object.entries(dynamicConfigFields).map(([key, schema]) => [key, withoutDefault(schema as z.ZodType).optional()]),
    ) as PartialFields,
    expecting(DYNAMIC_SETTINGS_EXAMPLE),
  )
  .superRefine((partial, ctx) => checkTimings({ ...DEFAULT_DYNAMIC_CONFIG, ...partial }, ctx));

export type PartialDynamicConfig = z.output<typeof partialDynamicConfigSchema>;

/** The names of the settings (postgresql included). */
export const DYNAMIC_CONFIG_FIELDS = Object.keys(dynamicConfigFields) as (keyof DynamicConfig)[];
