import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  applyConfigPatch,
  applyConfigSetting,
  mergePatch,
  parseHostPort,
  splitConfigSetting,
  validateDynamicConfig,
} from '../../src/config/schema.js';
import { closest, didYouMean, editDistance } from '../../src/config/suggest.js';
import { PgwardenError } from '../../src/errors.js';
import { expectPgwardenError } from '../helpers/errors.js';
import { DEFAULT_DYNAMIC_CONFIG, dynamicConfigSchema, type DynamicConfig } from '../../src/cluster/dynamic-config.js';

/** Runs `fn`, expects CONFIG_INVALID, and checks every pattern against the message. */
function invalid(fn: () => unknown, ...patterns: RegExp[]): string {
  return expectPgwardenError('CONFIG_INVALID', fn, ...patterns);
}

const defaults = (): DynamicConfig => structuredClone(DEFAULT_DYNAMIC_CONFIG);

describe('suggest', () => {
  it('editDistance', () => {
    assert.equal(editDistance('', ''), 0);
    assert.equal(editDistance('abc', ''), 3);
    assert.equal(editDistance('kitten', 'sitting'), 3);
    assert.equal(editDistance('loop_wait', 'loop_wiat'), 2);
    assert.equal(editDistance('ttl', 'ttl'), 0);
  });

  it('closest finds plausible typos only', () => {
    const keys = ['ttl', 'loop_wait', 'retry_timeout', 'maximum_lag_on_failover', 'pause'];
    assert.equal(closest('loop_wiat', keys), 'loop_wait');
    assert.equal(closest('tll', keys), 'ttl');
    assert.equal(closest('TTL', keys), 'ttl');
    assert.equal(closest('retry_timout', keys), 'retry_timeout');
    assert.equal(closest('maximum_lag_on_fail', keys), 'maximum_lag_on_failover');
    assert.equal(closest('banana', keys), null);
    assert.equal(closest('x', keys), null);
    assert.equal(closest('anything', []), null);
  });

  it('didYouMean formats a hint or nothing', () => {
    assert.equal(didYouMean('swichover', ['switchover', 'failover']), ' Did you mean "switchover"?');
    assert.equal(didYouMean('zzz', ['switchover']), '');
  });
});

describe('parseHostPort', () => {
  it('parses host:port and [v6]:port', () => {
    assert.deepEqual(parseHostPort('127.0.0.1:5432'), { host: '127.0.0.1', port: 5432 });
    assert.deepEqual(parseHostPort('db.example.com:6432'), { host: 'db.example.com', port: 6432 });
    assert.deepEqual(parseHostPort('[::1]:8008'), { host: '::1', port: 8008 });
  });
  it('rejects malformed values and ports out of range', () => {
    for (const bad of ['5432', 'host', 'host:', ':5432', 'host:65536', 'host:0', 'a b:1', '::1:8008', 'host:12x']) {
      assert.equal(parseHostPort(bad), null, bad);
    }
    assert.deepEqual(parseHostPort('127.0.0.1:0', { allowPortZero: true }), { host: '127.0.0.1', port: 0 });
  });
});

describe('validateDynamicConfig', () => {
  it('an empty object gives exactly DEFAULT_DYNAMIC_CONFIG', () => {
    assert.deepEqual(validateDynamicConfig({}), DEFAULT_DYNAMIC_CONFIG);
    assert.deepEqual(dynamicConfigSchema.parse({}), DEFAULT_DYNAMIC_CONFIG);
  });

  it('keeps given values and fills the rest', () => {
    const config = validateDynamicConfig({ ttl: 10, synchronous_mode: true, postgresql: { parameters: { work_mem: '64MB', max_connections: 200, fsync: true } } });
    assert.equal(config.ttl, 10);
    assert.equal(config.synchronous_mode, true);
    assert.equal(config.loop_wait, DEFAULT_DYNAMIC_CONFIG.loop_wait);
    assert.deepEqual(config.postgresql.parameters, { work_mem: '64MB', max_connections: 200, fsync: true });
  });

  it('the defaults sit exactly on ttl = loop_wait + 2 * retry_timeout, which is allowed', () => {
    assert.doesNotThrow(() => validateDynamicConfig({ ttl: 5, loop_wait: 1, retry_timeout: 2 }));
  });

  it('ttl below loop_wait + 2 * retry_timeout is refused with the rule and the fix', () => {
    invalid(() => validateDynamicConfig({ ttl: 4 }), /ttl: must be at least loop_wait \+ 2 \* retry_timeout = 1 \+ 2 \* 2 = 5 seconds/, /got 4/, /raise ttl to 5/);
    invalid(() => validateDynamicConfig({ ttl: 10, retry_timeout: 5 }), /= 11 seconds/);
  });

  it('loop_wait must be below ttl', () => {
    invalid(() => validateDynamicConfig({ ttl: 5, loop_wait: 5 }), /loop_wait: must be less than ttl \(5\)/);
  });

  it('each field has its own bound', () => {
    invalid(() => validateDynamicConfig({ ttl: 1 }), /ttl: must be at least 2 seconds/);
    invalid(() => validateDynamicConfig({ loop_wait: 0.05 }), /loop_wait: must be at least 0\.1/);
    invalid(() => validateDynamicConfig({ retry_timeout: 0 }), /retry_timeout: must be more than 0/);
    invalid(() => validateDynamicConfig({ maximum_lag_on_failover: -1 }), /maximum_lag_on_failover: must be 0 or more bytes/);
    invalid(() => validateDynamicConfig({ maximum_lag_on_failover: 1.5 }), /whole number of bytes/);
    invalid(() => validateDynamicConfig({ synchronous_node_count: 0 }), /synchronous_node_count: must be at least 1/);
    invalid(() => validateDynamicConfig({ member_slots_ttl: -5 }), /member_slots_ttl/);
  });

  it('a field that fails its own rule is not reported again by the cross-field rule', () => {
    const message = invalid(() => validateDynamicConfig({ ttl: 1 }), /ttl/);
    assert.doesNotMatch(message, /loop_wait \+ 2/);
  });

  it('wrong types say what was expected and what came', () => {
    invalid(() => validateDynamicConfig({ ttl: '10' }), /ttl: expected a number of seconds like 5, got "10"/);
    invalid(() => validateDynamicConfig({ pause: 'yes' }), /pause: expected true or false, got "yes"/);
    invalid(() => validateDynamicConfig({ postgresql: { parameters: { work_mem: ['64MB'] } } }), /postgresql\.parameters\.work_mem: expected a string, number or boolean/);
    invalid(() => validateDynamicConfig(null), /expected a mapping of dynamic settings/);
  });

  it('unknown keys are refused with a suggestion', () => {
    invalid(() => validateDynamicConfig({ loop_wiat: 2 }), /loop_wiat: unknown key; did you mean "loop_wait"\?/);
    invalid(() => validateDynamicConfig({ postgresql: { parameter: {} } }), /postgresql\.parameter: unknown key; did you mean "parameters"\?/);
    invalid(() => validateDynamicConfig({ zzzzzz: 1 }), /zzzzzz: unknown key; valid keys here: ttl, loop_wait/);
  });

  it('parameters pgwarden manages are refused with the reason', () => {
    invalid(() => validateDynamicConfig({ postgresql: { parameters: { synchronous_standby_names: '*' } } }), /synchronous_standby_names: is managed by pgwarden.*synchronous_mode/);
    invalid(() => validateDynamicConfig({ postgresql: { parameters: { port: 5433 } } }), /port: is managed by pgwarden.*postgresql\.listen/);
  });

  it('parameter names must look like PostgreSQL names', () => {
    invalid(() => validateDynamicConfig({ postgresql: { parameters: { 'work mem': '1MB' } } }), /invalid name "work mem"/);
    assert.doesNotThrow(() => validateDynamicConfig({ postgresql: { parameters: { 'pg_stat_statements.max': 1000 } } }));
  });

  it('lists every problem at once', () => {
    invalid(() => validateDynamicConfig({ ttl: 'x', pause: 1, tll: 3 }), /3 problems/, /ttl: expected/, /pause: expected/, /tll: unknown key; did you mean "ttl"/);
  });

  it('names its source', () => {
    invalid(() => validateDynamicConfig({ ttl: 1 }, 'PATCH /config'), /^PATCH \/config is invalid: ttl/);
  });
});

describe('applyConfigSetting', () => {
  it('sets numbers and booleans on top-level keys', () => {
    assert.equal(applyConfigSetting(defaults(), 'ttl', '10').ttl, 10);
    assert.equal(applyConfigSetting(defaults(), 'loop_wait', '0.5').loop_wait, 0.5);
    assert.equal(applyConfigSetting(defaults(), 'synchronous_mode', 'true').synchronous_mode, true);
    assert.equal(applyConfigSetting(defaults(), 'pause', 'on').pause, true);
    assert.equal(applyConfigSetting({ ...defaults(), pause: true }, 'pause', 'false').pause, false);
  });

  it('sets PostgreSQL parameters with dotted keys, typed', () => {
    let config = applyConfigSetting(defaults(), 'postgresql.parameters.work_mem', '64MB');
    config = applyConfigSetting(config, 'postgresql.parameters.max_connections', '200');
    config = applyConfigSetting(config, 'postgresql.parameters.hot_standby_feedback', 'true');
    config = applyConfigSetting(config, 'postgresql.parameters.pg_stat_statements.track', 'all');
    assert.deepEqual(config.postgresql.parameters, {
      work_mem: '64MB',
      max_connections: 200,
      hot_standby_feedback: true,
      'pg_stat_statements.track': 'all',
    });
  });

  it('null resets a key to its default and removes a parameter', () => {
    const start = { ...defaults(), ttl: 30, postgresql: { parameters: { work_mem: '64MB', a: 1 } } };
    assert.equal(applyConfigSetting(start, 'ttl', 'null').ttl, DEFAULT_DYNAMIC_CONFIG.ttl);
    assert.deepEqual(applyConfigSetting(start, 'postgresql.parameters.work_mem', 'null').postgresql.parameters, { a: 1 });
  });

  it('does not modify its input', () => {
    const start = defaults();
    applyConfigSetting(start, 'ttl', '10');
    applyConfigSetting(start, 'postgresql.parameters.work_mem', '1MB');
    assert.deepEqual(start, DEFAULT_DYNAMIC_CONFIG);
  });

  it('refuses unknown keys with the closest valid one', () => {
    invalid(() => applyConfigSetting(defaults(), 'loop_wiat', '2'), /unknown setting "loop_wiat": did you mean "loop_wait"\?/);
    invalid(() => applyConfigSetting(defaults(), 'postgresql.paramters.work_mem', '1MB'), /did you mean "postgresql\.parameters\.work_mem"\?/);
    invalid(() => applyConfigSetting(defaults(), 'postgres.work_mem', '1MB'), /unknown setting/);
    invalid(() => applyConfigSetting(defaults(), 'qqqqqqqq', '1'), /valid keys: ttl, loop_wait/);
    invalid(() => applyConfigSetting(defaults(), 'postgresql.parameters', '{}'), /one parameter at a time/);
  });

  it('refuses values of the wrong type', () => {
    invalid(() => applyConfigSetting(defaults(), 'ttl', 'ten'), /setting ttl: expected a number like 5, got "ten"/);
    invalid(() => applyConfigSetting(defaults(), 'synchronous_mode', 'maybe'), /expected true or false/);
  });

  it('validates the result (cross-field rules included)', () => {
    invalid(() => applyConfigSetting(defaults(), 'ttl', '3'), /setting ttl=3 is invalid: ttl: must be at least loop_wait \+ 2 \* retry_timeout/);
    invalid(() => applyConfigSetting(defaults(), 'postgresql.parameters.primary_conninfo', 'host=x'), /managed by pgwarden/);
  });

  it('splitConfigSetting', () => {
    assert.deepEqual(splitConfigSetting('ttl=10'), { key: 'ttl', value: '10' });
    assert.deepEqual(splitConfigSetting('postgresql.parameters.search_path=a=b'), { key: 'postgresql.parameters.search_path', value: 'a=b' });
    invalid(() => splitConfigSetting('ttl'), /key=value/);
    invalid(() => splitConfigSetting('=10'), /key=value/);
  });
});

describe('mergePatch and applyConfigPatch', () => {
  it('mergePatch follows RFC 7386', () => {
    assert.deepEqual(mergePatch({ a: 'b' }, { a: 'c' }), { a: 'c' });
    assert.deepEqual(mergePatch({ a: 'b' }, { b: 'c' }), { a: 'b', b: 'c' });
    assert.deepEqual(mergePatch({ a: 'b' }, { a: null }), {});
    assert.deepEqual(mergePatch({ a: 'b', b: 'c' }, { a: null }), { b: 'c' });
    assert.deepEqual(mergePatch({ a: ['b'] }, { a: 'c' }), { a: 'c' });
    assert.deepEqual(mergePatch({ a: { b: 'c' } }, { a: { b: 'd', c: null } }), { a: { b: 'd' } });
    assert.deepEqual(mergePatch({ a: [{ b: 'c' }] }, { a: [1] }), { a: [1] });
    assert.deepEqual(mergePatch({}, { a: { bb: { ccc: null } } }), { a: { bb: {} } });
  });

  it('patches, deletes back to defaults and validates', () => {
    const current = { ...defaults(), ttl: 30, loop_wait: 0.5, postgresql: { parameters: { work_mem: '4MB', shared_buffers: '1GB' } } };
    const next = applyConfigPatch(current, { ttl: null, pause: true, postgresql: { parameters: { work_mem: '64MB', shared_buffers: null } } });
    assert.equal(next.ttl, DEFAULT_DYNAMIC_CONFIG.ttl);
    assert.equal(next.loop_wait, 0.5);
    assert.equal(next.pause, true);
    assert.deepEqual(next.postgresql.parameters, { work_mem: '64MB' });
    assert.equal(current.ttl, 30, 'input untouched');
  });

  it('a patch that breaks a rule is refused with the field', () => {
    invalid(() => applyConfigPatch(defaults(), { loop_wait: 4 }), /ttl: must be at least/);
    invalid(() => applyConfigPatch(defaults(), { tll: 10 }), /tll: unknown key; did you mean "ttl"/);
    invalid(() => applyConfigPatch(defaults(), [1, 2]), /must be a JSON object/);
  });
});
