/** The SQL-text and command-tag classification that transaction pooling pins clients by (pure logic). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ADVISORY_UNLOCK_ALL, SessionTag, SqlEffect, advisoryEffect, leadingEffects, sessionTagOf } from '../../src/proxy/protocol/session-state.js';

function effects(sql: string): number {
  const b = Buffer.from(`xx${sql}\0yy`, 'latin1');
  return leadingEffects(b, 2, 2 + sql.length);
}

function advisory(sql: string): number {
  const b = Buffer.from(sql, 'latin1');
  return advisoryEffect(b, 0, b.length);
}

function tag(text: string): number {
  const b = Buffer.from(`${text}\0`, 'latin1');
  return sessionTagOf(b, 0, b.length);
}

describe('session-state classification', () => {
  it('leading keywords', () => {
    assert.equal(effects("  set local statement_timeout = '1s';  "), SqlEffect.ExemptSet);
    assert.equal(effects('SET LOCAL a = 1; SET b = 2'), SqlEffect.PinningSet, 'a second statement may be a session SET');
    assert.equal(effects('SET statement_timeout = 1'), SqlEffect.PinningSet);
    assert.equal(effects('SET TRANSACTION ISOLATION LEVEL SERIALIZABLE'), SqlEffect.ExemptSet);
    assert.equal(effects('set constraints all deferred'), SqlEffect.ExemptSet);
    assert.equal(effects('SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY'), SqlEffect.PinningSet);
    assert.equal(effects('SET localx = 1'), SqlEffect.PinningSet);
    assert.equal(effects('Reset All'), SqlEffect.ExemptSet | SqlEffect.ResetAll);
    assert.equal(effects('RESET work_mem'), SqlEffect.PinningSet);
    // Parameters the server reports (ParameterStatus): followed per client instead of pinning.
    assert.equal(effects("SET TimeZone = 'UTC'"), SqlEffect.FollowedSet);
    assert.equal(effects("set session time  zone 'Europe/Paris';"), SqlEffect.FollowedSet);
    assert.equal(effects("SET NAMES 'LATIN1'"), SqlEffect.FollowedSet);
    assert.equal(effects('SET application_name TO x'), SqlEffect.FollowedSet);
    assert.equal(effects('set DateStyle = ISO, DMY'), SqlEffect.FollowedSet);
    assert.equal(effects('RESET intervalstyle'), SqlEffect.FollowedSet);
    assert.equal(effects('SET standard_conforming_strings = on'), SqlEffect.FollowedSet);
    assert.equal(effects("SET TimeZone = 'UTC'; SET search_path = x"), SqlEffect.PinningSet, 'not alone in the text');
    assert.equal(effects('SET "TimeZone" = UTC'), SqlEffect.PinningSet, 'quoted: not recognised, pinned');
    assert.equal(effects('SET timezone_abbreviations = Default'), SqlEffect.PinningSet);
    assert.equal(effects('SET ROLE app'), SqlEffect.PinningSet);
    assert.equal(effects('RESET names'), SqlEffect.PinningSet, 'NAMES is only a SET spelling');
    assert.equal(effects('unlisten *'), SqlEffect.UnlistenAll);
    assert.equal(effects('UNLISTEN chan'), 0);
    assert.equal(effects('DISCARD ALL'), SqlEffect.DiscardAll | SqlEffect.ExemptSet);
    assert.equal(effects('DECLARE c CURSOR WITH HOLD FOR SELECT 1'), SqlEffect.HoldCursor);
    assert.equal(effects('DECLARE c CURSOR FOR SELECT threshold'), 0);
    assert.equal(effects('create temp table t (x int)'), SqlEffect.TempTable);
    assert.equal(effects('CREATE LOCAL TEMPORARY TABLE t (x int)'), SqlEffect.TempTable);
    assert.equal(effects('CREATE GLOBAL TEMP TABLE t (x int)'), SqlEffect.TempTable);
    assert.equal(effects('CREATE TABLE temp (x int)'), 0);
    assert.equal(effects('SELECT 1'), 0);
    assert.equal(effects(''), 0);
  });

  it('advisory lock calls', () => {
    assert.equal(advisory('SELECT pg_advisory_lock(1)'), 1);
    assert.equal(advisory('SELECT pg_try_advisory_lock_shared(1), PG_ADVISORY_LOCK(2, 3)'), 2);
    assert.equal(advisory('select pg_advisory_unlock(1)'), -1);
    assert.equal(advisory('select pg_advisory_unlock_shared(1)'), -1);
    assert.equal(advisory('SELECT pg_advisory_lock(1), pg_advisory_unlock_all()'), ADVISORY_UNLOCK_ALL);
    assert.equal(advisory('SELECT pg_advisory_xact_lock(1), pg_try_advisory_xact_lock_shared(2)'), 0);
    assert.equal(advisory('SELECT abalance FROM pgbench_accounts WHERE aid = 1; SELECT key_y_z'), 0);
  });

  it('command tags', () => {
    assert.equal(tag('SET'), SessionTag.Set);
    assert.equal(tag('RESET'), SessionTag.Set);
    assert.equal(tag('LISTEN'), SessionTag.Listen);
    assert.equal(tag('PREPARE'), SessionTag.Prepare);
    assert.equal(tag('DECLARE CURSOR'), SessionTag.DeclareCursor);
    assert.equal(tag('DEALLOCATE ALL'), SessionTag.DeallocateAll);
    assert.equal(tag('DISCARD ALL'), SessionTag.DeallocateAll);
    for (const other of ['SELECT 1', 'UNLISTEN', 'SHOW', 'INSERT 0 1', 'LOCK TABLE', 'DEALLOCATE', 'ROLLBACK', 'DISCARD TEMP', 'DROP FUNCTION']) assert.equal(tag(other), 0, other);
  });
});
