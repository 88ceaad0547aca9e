/**
 * Encoders and decoders for the PostgreSQL protocol 3.0 messages a pooler needs, and no others: everything else
 * is forwarded as whole frames without being looked at. Hand-written rather than taken from a protocol library
 * (node-postgres's pg-protocol decodes every message into an object, and only speaks the client side): on the
 * proxy's hot path only the few fields routing and pooling need are read, straight from the frame's bytes.
 *
 * Conventions:
 * - Builders are `writeX(writer, ...)`: they append one message to a MessageWriter (no allocation per field).
 * - Decoders are `decodeX(buffer, bodyStart, end)`: they read one frame's body as handed out by MessageFramer
 *   and throw PgProtocolError (08P01, PostgreSQL's wording) on a malformed body. Byte payloads come back as
 *   views into `buffer`, not copies.
 * - Statement and portal names are read and written as 'latin1', i.e. byte for byte: two names that differ in
 *   bytes never become the same key, and writing a decoded name back gives the client's exact bytes. Query
 *   texts, parameter values and startup parameters are UTF-8 (the proxy speaks client_encoding UTF8).
 */
import { BackendType, ErrorField, FrontendType, TargetKindByte, TransactionStatusByte } from './constants.js';
import { PgProtocolError, SQLSTATE, protocolViolation } from './errors.js';
import { BodyReader } from './reader.js';
import { MessageWriter } from './writer.js';

// The protocol's byte constants live in constants.ts; the message types are re-exported for existing callers.
export { BackendType, FrontendType } from './constants.js';

/** The int32 after the length of a startup-phase packet. */
export const StartupCode = {
  /** Protocol 3.0 StartupMessage (3 << 16). */
  Protocol3: 196608,
  SSLRequest: 80877103,
  GSSENCRequest: 80877104,
  CancelRequest: 80877102,
} as const;

/** The int32 that says which Authentication message an 'R' is. */
export const AuthCode = {
  Ok: 0,
  KerberosV5: 2,
  CleartextPassword: 3,
  MD5Password: 5,
  GSS: 7,
  GSSContinue: 8,
  SSPI: 9,
  SASL: 10,
  SASLContinue: 11,
  SASLFinal: 12,
} as const;

/** Type OIDs for RowDescription (pg_type). */
export const TypeOid = { bool: 16, int8: 20, int2: 21, int4: 23, text: 25, oid: 26, float8: 701, timestamptz: 1184, numeric: 1700 } as const;

/** Unframed one-byte answers to SSLRequest / GSSENCRequest. */
export const SSL_ACCEPTED: Buffer = Buffer.from('S');
export const SSL_REFUSED: Buffer = Buffer.from('N');
export const GSSENC_REFUSED: Buffer = Buffer.from('N');

const reader = new BodyReader();

// ---------------------------------------------------------------------------------------------------------------
// Startup phase (client → server, no type byte)
// ---------------------------------------------------------------------------------------------------------------

export interface StartupMessage {
  kind: 'startup';
  /** Minor protocol version the client asked for (major is always 3 here). */
  minorVersion: number;
  /** Every parameter but `_pq_.*` protocol options, in the order sent (a repeated name keeps the last value). */
  params: Map<string, string>;
  user: string;
  /** `database`, or the user name when absent or empty (as PostgreSQL does). */
  database: string;
  options: string | undefined;
  applicationName: string | undefined;
  replication: string | undefined;
  /** Names of `_pq_.*` protocol options the client asked for; a proxy supporting none lists them in NegotiateProtocolVersion. */
  protocolOptions: string[];
}

export type StartupFrame =
  | StartupMessage
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; pid: number; secretKey: number };

const SSL_FRAME: StartupFrame = Object.freeze({ kind: 'ssl' as const });
const GSSENC_FRAME: StartupFrame = Object.freeze({ kind: 'gssenc' as const });

/** Decodes a startup-phase frame; `bodyStart` points at the code. */
export function decodeStartupFrame(buffer: Buffer, bodyStart: number, end: number): StartupFrame {
  const r = reader.reset(buffer, bodyStart, end);
  if (r.remaining < 4) throw protocolViolation('invalid length of startup packet');
  const code = r.uint32();
  switch (code) {
    case StartupCode.SSLRequest:
    case StartupCode.GSSENCRequest:
      if (r.remaining !== 0) throw protocolViolation('invalid length of startup packet');
      return code === StartupCode.SSLRequest ? SSL_FRAME : GSSENC_FRAME;
    case StartupCode.CancelRequest: {
      if (r.remaining !== 8) throw protocolViolation('invalid length of startup packet');
      const pid = r.uint32();
      return { kind: 'cancel', pid, secretKey: r.uint32() };
    }
  }
  const major = code >>> 16;
  const minor = code & 0xffff;
  if (major !== 3) {
    throw new PgProtocolError(SQLSTATE.FEATURE_NOT_SUPPORTED, `unsupported frontend protocol ${major}.${minor}: server supports 3.0 to 3.0`);
  }
  const params = new Map<string, string>();
  const protocolOptions: string[] = [];
  for (;;) {
    if (r.remaining === 0) throw protocolViolation('invalid startup packet layout: expected terminator as last byte');
    const name = r.cstring();
    if (name === '') break;
    const value = r.cstring();
    if (name.startsWith('_pq_.')) protocolOptions.push(name);
    else params.set(name, value);
  }
  if (r.remaining !== 0) throw protocolViolation('invalid startup packet layout: expected terminator as last byte');
  const user = params.get('user');
  if (user === undefined || user === '') {
    throw new PgProtocolError(SQLSTATE.INVALID_AUTHORIZATION_SPECIFICATION, 'no PostgreSQL user name specified in startup packet');
  }
  const database = params.get('database');
  return {
    kind: 'startup',
    minorVersion: minor,
    params,
    user,
    database: database === undefined || database === '' ? user : database,
    options: params.get('options'),
    applicationName: params.get('application_name'),
    replication: params.get('replication'),
    protocolOptions,
  };
}

/** StartupMessage for protocol 3.0 (the proxy connecting to PostgreSQL). Pairs with empty values are sent as is. */
export function writeStartupMessage(w: MessageWriter, params: Readonly<Record<string, string>> | ReadonlyMap<string, string>): MessageWriter {
  w.beginUntyped().int32(StartupCode.Protocol3);
  const entries = params instanceof Map ? params.entries() : Object.entries(params);
  for (const [name, value] of entries) {
    if (name === '') throw new RangeError('a startup parameter needs a non-empty name');
    w.cstring(name).cstring(value);
  }
  return w.int8(0).end();
}

export function writeSSLRequest(w: MessageWriter): MessageWriter {
  return w.beginUntyped().int32(StartupCode.SSLRequest).end();
}

export function writeGSSENCRequest(w: MessageWriter): MessageWriter {
  return w.beginUntyped().int32(StartupCode.GSSENCRequest).end();
}

export function writeCancelRequest(w: MessageWriter, pid: number, secretKey: number): MessageWriter {
  return w.beginUntyped().int32(StartupCode.CancelRequest).int32(pid).int32(secretKey).end();
}

// ---------------------------------------------------------------------------------------------------------------
// Authentication exchange
// ---------------------------------------------------------------------------------------------------------------

export function writeAuthenticationOk(w: MessageWriter): MessageWriter {
  return w.begin(BackendType.Authentication).int32(AuthCode.Ok).end();
}

export function writeAuthenticationCleartextPassword(w: MessageWriter): MessageWriter {
  return w.begin(BackendType.Authentication).int32(AuthCode.CleartextPassword).end();
}

export function writeAuthenticationMD5Password(w: MessageWriter, salt: Uint8Array): MessageWriter {
  if (salt.length !== 4) throw new RangeError(`an MD5 salt is 4 bytes, got ${salt.length}`);
  return w.begin(BackendType.Authentication).int32(AuthCode.MD5Password).bytes(salt).end();
}

export function writeAuthenticationSASL(w: MessageWriter, mechanisms: readonly string[]): MessageWriter {
  w.begin(BackendType.Authentication).int32(AuthCode.SASL);
  for (const mechanism of mechanisms) w.cstring(mechanism);
  return w.int8(0).end();
}

export function writeAuthenticationSASLContinue(w: MessageWriter, data: Uint8Array): MessageWriter {
  return w.begin(BackendType.Authentication).int32(AuthCode.SASLContinue).bytes(data).end();
}

export function writeAuthenticationSASLFinal(w: MessageWriter, data: Uint8Array): MessageWriter {
  return w.begin(BackendType.Authentication).int32(AuthCode.SASLFinal).bytes(data).end();
}

export type AuthenticationRequest =
  | { kind: 'ok'; code: 0 }
  | { kind: 'cleartext-password'; code: 3 }
  | { kind: 'md5-password'; code: 5; salt: Buffer }
  | { kind: 'sasl'; code: 10; mechanisms: string[] }
  | { kind: 'sasl-continue'; code: 11; data: Buffer }
  | { kind: 'sasl-final'; code: 12; data: Buffer }
  /** Kerberos, GSS, SSPI: the proxy does not speak them; `data` is the rest of the body. */
  | { kind: 'other'; code: number; data: Buffer };

/** Decodes an Authentication ('R') message from a server. */
export function decodeAuthentication(buffer: Buffer, bodyStart: number, end: number): AuthenticationRequest {
  const r = reader.reset(buffer, bodyStart, end);
  const code = r.int32();
  switch (code) {
    case AuthCode.Ok:
      r.done();
      return { kind: 'ok', code };
    case AuthCode.CleartextPassword:
      r.done();
      return { kind: 'cleartext-password', code };
    case AuthCode.MD5Password: {
      const salt = r.bytes(4);
      r.done();
      return { kind: 'md5-password', code, salt };
    }
    case AuthCode.SASL: {
      const mechanisms: string[] = [];
      for (;;) {
        const name = r.cstring();
        if (name === '') break;
        mechanisms.push(name);
      }
      r.done();
      return { kind: 'sasl', code, mechanisms };
    }
    case AuthCode.SASLContinue:
      return { kind: 'sasl-continue', code, data: r.rest() };
    case AuthCode.SASLFinal:
      return { kind: 'sasl-final', code, data: r.rest() };
    default:
      return { kind: 'other', code, data: r.rest() };
  }
}

/** PasswordMessage: a cleartext password or an md5 response ("md5" + 32 hex digits). */
export function writePasswordMessage(w: MessageWriter, password: string): MessageWriter {
  return w.begin(FrontendType.Password).cstring(password).end();
}

export function decodePasswordMessage(buffer: Buffer, bodyStart: number, end: number): string {
  const r = reader.reset(buffer, bodyStart, end);
  const password = r.cstring();
  r.done();
  return password;
}

/** SASLInitialResponse; `data` null sends length -1 ("no initial response"). */
export function writeSASLInitialResponse(w: MessageWriter, mechanism: string, data: Uint8Array | null): MessageWriter {
  w.begin(FrontendType.Password).cstring(mechanism);
  if (data === null) w.int32(-1);
  else w.int32(data.length).bytes(data);
  return w.end();
}

export interface SASLInitialResponse {
  mechanism: string;
  /** Null when the client sent length -1. */
  data: Buffer | null;
}

export function decodeSASLInitialResponse(buffer: Buffer, bodyStart: number, end: number): SASLInitialResponse {
  const r = reader.reset(buffer, bodyStart, end);
  const mechanism = r.cstring();
  const length = r.int32();
  const data = length === -1 ? null : r.bytes(length);
  r.done();
  return { mechanism, data };
}

export function writeSASLResponse(w: MessageWriter, data: Uint8Array): MessageWriter {
  return w.begin(FrontendType.Password).bytes(data).end();
}

/** The whole body is the SASL data. */
export function decodeSASLResponse(buffer: Buffer, bodyStart: number, end: number): Buffer {
  return reader.reset(buffer, bodyStart, end).rest();
}

// ---------------------------------------------------------------------------------------------------------------
// Session setup and status (server → client)
// ---------------------------------------------------------------------------------------------------------------

export function writeParameterStatus(w: MessageWriter, name: string, value: string): MessageWriter {
  return w.begin(BackendType.ParameterStatus).cstring(name).cstring(value).end();
}

export function decodeParameterStatus(buffer: Buffer, bodyStart: number, end: number): { name: string; value: string } {
  const r = reader.reset(buffer, bodyStart, end);
  const name = r.cstring();
  const value = r.cstring();
  r.done();
  return { name, value };
}

export function writeBackendKeyData(w: MessageWriter, pid: number, secretKey: number): MessageWriter {
  return w.begin(BackendType.BackendKeyData).int32(pid).int32(secretKey).end();
}

/** pid and secret key as unsigned 32-bit numbers (the same form decodeStartupFrame gives a CancelRequest's). */
export function decodeBackendKeyData(buffer: Buffer, bodyStart: number, end: number): { pid: number; secretKey: number } {
  const r = reader.reset(buffer, bodyStart, end);
  const pid = r.uint32();
  const secretKey = r.uint32();
  r.done();
  return { pid, secretKey };
}

export type TransactionStatus = 'I' | 'T' | 'E';

export function writeReadyForQuery(w: MessageWriter, status: TransactionStatus): MessageWriter {
  return w.begin(BackendType.ReadyForQuery).int8(status.charCodeAt(0)).end();
}

/** 'I' idle, 'T' in a transaction, 'E' in a failed transaction. Allocation-free: one-character strings are interned. */
export function decodeReadyForQuery(buffer: Buffer, bodyStart: number, end: number): TransactionStatus {
  if (end - bodyStart !== 1) throw protocolViolation('invalid message format', 'ReadyForQuery must carry exactly one status byte.');
  const status = buffer[bodyStart];
  if (status === TransactionStatusByte.Idle) return 'I';
  if (status === TransactionStatusByte.InTransaction) return 'T';
  if (status === TransactionStatusByte.Failed) return 'E';
  throw protocolViolation('invalid message format', `ReadyForQuery carries unknown transaction status ${status}.`);
}

/**
 * NegotiateProtocolVersion: the newest minor version of protocol 3 supported and the `_pq_.` options not
 * recognised. Sent after a StartupMessage asking for 3.x with x > 0 or for options.
 */
export function writeNegotiateProtocolVersion(w: MessageWriter, newestMinor: number, unsupportedOptions: readonly string[]): MessageWriter {
  w.begin(BackendType.NegotiateProtocolVersion).int32(newestMinor).int32(unsupportedOptions.length);
  for (const option of unsupportedOptions) w.cstring(option);
  return w.end();
}

export function decodeNegotiateProtocolVersion(buffer: Buffer, bodyStart: number, end: number): { newestMinor: number; unsupportedOptions: string[] } {
  const r = reader.reset(buffer, bodyStart, end);
  const newestMinor = r.int32();
  const count = r.int32();
  if (count < 0 || count > r.remaining) throw protocolViolation('invalid message format');
  const unsupportedOptions: string[] = [];
  for (let i = 0; i < count; i++) unsupportedOptions.push(r.cstring());
  r.done();
  return { newestMinor, unsupportedOptions };
}

// ---------------------------------------------------------------------------------------------------------------
// ErrorResponse / NoticeResponse
// ---------------------------------------------------------------------------------------------------------------

/** The fields of an ErrorResponse or NoticeResponse, by their meaning. Unknown field codes are ignored (as the protocol asks). */
export interface ErrorFields {
  /** S: ERROR, FATAL, PANIC, or WARNING, NOTICE, DEBUG, INFO, LOG for notices (possibly localized). */
  severity: string;
  /** V: the same, never localized. Builders send `severity` when absent. */
  severityNonLocalized?: string;
  /** C: the SQLSTATE. */
  code: string;
  /** M */
  message: string;
  /** D */
  detail?: string;
  /** H */
  hint?: string;
  /** P */
  position?: string;
  /** p */
  internalPosition?: string;
  /** q */
  internalQuery?: string;
  /** W */
  where?: string;
  /** s */
  schema?: string;
  /** t */
  table?: string;
  /** c */
  column?: string;
  /** d */
  dataType?: string;
  /** n */
  constraint?: string;
  /** F */
  file?: string;
  /** L */
  line?: string;
  /** R */
  routine?: string;
}

type OptionalErrorField = Exclude<keyof ErrorFields, 'severity' | 'code' | 'message'>;

const OPTIONAL_FIELD_CODES: ReadonlyArray<readonly [number, OptionalErrorField]> = [
  [ErrorField.SeverityNonLocalized, 'severityNonLocalized'],
  [ErrorField.Detail, 'detail'],
  [ErrorField.Hint, 'hint'],
  [ErrorField.Position, 'position'],
  [ErrorField.InternalPosition, 'internalPosition'],
  [ErrorField.InternalQuery, 'internalQuery'],
  [ErrorField.Where, 'where'],
  [ErrorField.Schema, 'schema'],
  [ErrorField.Table, 'table'],
  [ErrorField.Column, 'column'],
  [ErrorField.DataType, 'dataType'],
  [ErrorField.Constraint, 'constraint'],
  [ErrorField.File, 'file'],
  [ErrorField.Line, 'line'],
  [ErrorField.Routine, 'routine'],
];
const FIELD_BY_CODE = new Map<number, OptionalErrorField>(OPTIONAL_FIELD_CODES);

/** Field values may come from clients (user names in messages): a NUL would end the field early, so it is dropped. */
function fieldText(value: string): string {
  return value.indexOf('\0') === -1 ? value : value.replaceAll('\0', '');
}

function writeFields(w: MessageWriter, type: number, fields: ErrorFields): MessageWriter {
  w.begin(type);
  w.int8(ErrorField.Severity).cstring(fieldText(fields.severity));
  w.int8(ErrorField.SeverityNonLocalized).cstring(fieldText(fields.severityNonLocalized ?? fields.severity));
  w.int8(ErrorField.Code).cstring(fieldText(fields.code));
  w.int8(ErrorField.Message).cstring(fieldText(fields.message));
  for (const [code, key] of OPTIONAL_FIELD_CODES) {
    if (key === 'severityNonLocalized') continue;
    const value = fields[key];
    if (value !== undefined) w.int8(code).cstring(fieldText(value));
  }
  return w.int8(0).end();
}

export function writeErrorResponse(w: MessageWriter, fields: ErrorFields): MessageWriter {
  return writeFields(w, BackendType.ErrorResponse, fields);
}

export function writeNoticeResponse(w: MessageWriter, fields: ErrorFields): MessageWriter {
  return writeFields(w, BackendType.NoticeResponse, fields);
}

/** One ErrorResponse as its own Buffer (error paths, where convenience beats reuse). */
export function errorResponse(fields: { severity?: string; code: string; message: string; detail?: string; hint?: string } & Partial<ErrorFields>): Buffer {
  return writeErrorResponse(new MessageWriter(256), { ...fields, severity: fields.severity ?? 'FATAL' }).flush();
}

/** One NoticeResponse as its own Buffer. */
export function noticeResponse(fields: { severity?: string; code: string; message: string } & Partial<ErrorFields>): Buffer {
  return writeNoticeResponse(new MessageWriter(256), { ...fields, severity: fields.severity ?? 'NOTICE' }).flush();
}

/** Decodes an ErrorResponse or NoticeResponse body. */
export function decodeErrorFields(buffer: Buffer, bodyStart: number, end: number): ErrorFields {
  const r = reader.reset(buffer, bodyStart, end);
  const fields: ErrorFields = { severity: '', code: '', message: '' };
  for (;;) {
    const code = r.uint8();
    if (code === 0) break;
    const value = r.cstring();
    if (code === ErrorField.Severity) fields.severity = value;
    else if (code === ErrorField.Code) fields.code = value;
    else if (code === ErrorField.Message) fields.message = value;
    else {
      const key = FIELD_BY_CODE.get(code);
      if (key !== undefined) fields[key] = value;
    }
  }
  r.done();
  return fields;
}

// ---------------------------------------------------------------------------------------------------------------
// Query results (the admin console answers with these; the pooler reads CommandComplete tags)
// ---------------------------------------------------------------------------------------------------------------

export function writeCommandComplete(w: MessageWriter, tag: string): MessageWriter {
  return w.begin(BackendType.CommandComplete).cstring(tag).end();
}

export function decodeCommandComplete(buffer: Buffer, bodyStart: number, end: number): string {
  const r = reader.reset(buffer, bodyStart, end);
  const tag = r.cstring();
  r.done();
  return tag;
}

export function writeEmptyQueryResponse(w: MessageWriter): MessageWriter {
  return w.begin(BackendType.EmptyQueryResponse).end();
}

export function writeParseComplete(w: MessageWriter): MessageWriter {
  return w.begin(BackendType.ParseComplete).end();
}

export function writeBindComplete(w: MessageWriter): MessageWriter {
  return w.begin(BackendType.BindComplete).end();
}

export function writeCloseComplete(w: MessageWriter): MessageWriter {
  return w.begin(BackendType.CloseComplete).end();
}

export function writeNoData(w: MessageWriter): MessageWriter {
  return w.begin(BackendType.NoData).end();
}

export interface ColumnDescription {
  name: string;
  /** Default TypeOid.text. */
  typeOid?: number;
  /** pg_type.typlen: -1 (default) for variable length. */
  typeSize?: number;
  /** Default -1. */
  typeModifier?: number;
  /** 0 text (default), 1 binary. */
  format?: number;
  /** Default 0 (not a table column). */
  tableOid?: number;
  /** Default 0. */
  columnNumber?: number;
}

export function writeRowDescription(w: MessageWriter, columns: readonly ColumnDescription[]): MessageWriter {
  w.begin(BackendType.RowDescription).int16(columns.length);
  for (const c of columns) {
    w.cstring(c.name)
      .int32(c.tableOid ?? 0)
      .int16(c.columnNumber ?? 0)
      .int32(c.typeOid ?? TypeOid.text)
      .int16(c.typeSize ?? -1)
      .int32(c.typeModifier ?? -1)
      .int16(c.format ?? 0);
  }
  return w.end();
}

export function decodeRowDescription(buffer: Buffer, bodyStart: number, end: number): Required<ColumnDescription>[] {
  const r = reader.reset(buffer, bodyStart, end);
  const count = r.int16();
  if (count < 0) throw protocolViolation('invalid message format');
  const columns: Required<ColumnDescription>[] = [];
  for (let i = 0; i < count; i++) {
    const name = r.cstring();
    const tableOid = r.uint32();
    const columnNumber = r.int16();
    const typeOid = r.uint32();
    const typeSize = r.int16();
    const typeModifier = r.int32();
    const format = r.int16();
    columns.push({ name, tableOid, columnNumber, typeOid, typeSize, typeModifier, format });
  }
  r.done();
  return columns;
}

/** A DataRow of text values (null for SQL NULL). */
export function writeDataRow(w: MessageWriter, values: ReadonlyArray<string | number | bigint | null>): MessageWriter {
  w.begin(BackendType.DataRow).int16(values.length);
  for (const value of values) {
    if (value === null) {
      w.int32(-1);
      continue;
    }
    const text = typeof value === 'string' ? value : String(value);
    const text8 = Buffer.byteLength(text, 'utf8');
    w.int32(text8).text(text);
  }
  return w.end();
}

/** A DataRow's columns as UTF-8 text (null for SQL NULL). */
export function decodeDataRow(buffer: Buffer, bodyStart: number, end: number): (string | null)[] {
  const r = reader.reset(buffer, bodyStart, end);
  const count = r.int16();
  if (count < 0) throw protocolViolation('invalid message format');
  const values: (string | null)[] = [];
  for (let i = 0; i < count; i++) {
    const length = r.int32();
    if (length === -1) values.push(null);
    else values.push(r.bytes(length).toString('utf8'));
  }
  r.done();
  return values;
}

// ---------------------------------------------------------------------------------------------------------------
// Simple and extended query protocol (client → server)
// ---------------------------------------------------------------------------------------------------------------

export function writeQuery(w: MessageWriter, sql: string): MessageWriter {
  return w.begin(FrontendType.Query).cstring(sql).end();
}

export function decodeQuery(buffer: Buffer, bodyStart: number, end: number): string {
  const r = reader.reset(buffer, bodyStart, end);
  const sql = r.cstring();
  r.done();
  return sql;
}

export interface ParseMessage {
  /** Prepared statement name, '' for the unnamed statement (latin1: byte-exact). */
  name: string;
  query: string;
  /** Parameter type OIDs; 0 lets the server infer. */
  paramTypes: number[];
}

export function writeParse(w: MessageWriter, name: string, query: string, paramTypes: readonly number[] = []): MessageWriter {
  w.begin(FrontendType.Parse).cstring(name, 'latin1').cstring(query).int16(paramTypes.length);
  for (const oid of paramTypes) w.int32(oid);
  return w.end();
}

export function decodeParse(buffer: Buffer, bodyStart: number, end: number): ParseMessage {
  const r = reader.reset(buffer, bodyStart, end);
  const name = r.cstring('latin1');
  const query = r.cstring();
  const count = r.int16();
  if (count < 0) throw protocolViolation('invalid message format');
  const paramTypes: number[] = [];
  for (let i = 0; i < count; i++) paramTypes.push(r.uint32());
  r.done();
  return { name, query, paramTypes };
}

export interface BindMessage {
  /** Destination portal, '' for the unnamed portal (latin1). */
  portal: string;
  /** Source prepared statement, '' for the unnamed statement (latin1). */
  statement: string;
  /** Where the parameter formats, values and result formats begin (left undecoded: they are forwarded as is). */
  paramsStart: number;
}

export function decodeBind(buffer: Buffer, bodyStart: number, end: number): BindMessage {
  const r = reader.reset(buffer, bodyStart, end);
  const portal = r.cstring('latin1');
  const statement = r.cstring('latin1');
  return { portal, statement, paramsStart: r.pos };
}

/** Bind with all parameters and results in text format (null → SQL NULL). */
export function writeBind(w: MessageWriter, portal: string, statement: string, values: ReadonlyArray<string | null> = []): MessageWriter {
  w.begin(FrontendType.Bind).cstring(portal, 'latin1').cstring(statement, 'latin1').int16(0).int16(values.length);
  for (const value of values) {
    if (value === null) w.int32(-1);
    else w.int32(Buffer.byteLength(value, 'utf8')).text(value);
  }
  return w.int16(0).end();
}

/** 'S' prepared statement, 'P' portal. */
export type TargetKind = 'S' | 'P';

export interface DescribeOrClose {
  kind: TargetKind;
  /** latin1, byte-exact. */
  name: string;
}

function decodeTarget(what: 'DESCRIBE' | 'CLOSE', buffer: Buffer, bodyStart: number, end: number): DescribeOrClose {
  const r = reader.reset(buffer, bodyStart, end);
  const kind = r.uint8();
  if (kind !== TargetKindByte.Statement && kind !== TargetKindByte.Portal) throw protocolViolation(`invalid ${what} message subtype ${kind}`);
  const name = r.cstring('latin1');
  r.done();
  return { kind: kind === TargetKindByte.Statement ? 'S' : 'P', name };
}

export function decodeDescribe(buffer: Buffer, bodyStart: number, end: number): DescribeOrClose {
  return decodeTarget('DESCRIBE', buffer, bodyStart, end);
}

export function decodeClose(buffer: Buffer, bodyStart: number, end: number): DescribeOrClose {
  return decodeTarget('CLOSE', buffer, bodyStart, end);
}

export function writeDescribe(w: MessageWriter, kind: TargetKind, name: string): MessageWriter {
  return w.begin(FrontendType.Describe).int8(kind.charCodeAt(0)).cstring(name, 'latin1').end();
}

export function writeClose(w: MessageWriter, kind: TargetKind, name: string): MessageWriter {
  return w.begin(FrontendType.Close).int8(kind.charCodeAt(0)).cstring(name, 'latin1').end();
}

export function decodeExecute(buffer: Buffer, bodyStart: number, end: number): { portal: string; maxRows: number } {
  const r = reader.reset(buffer, bodyStart, end);
  const portal = r.cstring('latin1');
  const maxRows = r.int32();
  r.done();
  return { portal, maxRows };
}

export function writeExecute(w: MessageWriter, portal: string, maxRows = 0): MessageWriter {
  return w.begin(FrontendType.Execute).cstring(portal, 'latin1').int32(maxRows).end();
}

export function writeSync(w: MessageWriter): MessageWriter {
  return w.begin(FrontendType.Sync).end();
}

export function writeFlush(w: MessageWriter): MessageWriter {
  return w.begin(FrontendType.Flush).end();
}

export function writeTerminate(w: MessageWriter): MessageWriter {
  return w.begin(FrontendType.Terminate).end();
}

/** Sync, Flush, Terminate and CopyDone carry nothing; PostgreSQL refuses them with a body. */
export function checkEmptyBody(bodyStart: number, end: number): void {
  if (end !== bodyStart) throw protocolViolation('invalid message format');
}

// ---------------------------------------------------------------------------------------------------------------
// COPY (either direction)
// ---------------------------------------------------------------------------------------------------------------

export function writeCopyData(w: MessageWriter, data: Uint8Array): MessageWriter {
  return w.begin(FrontendType.CopyData).bytes(data).end();
}

export function writeCopyDone(w: MessageWriter): MessageWriter {
  return w.begin(FrontendType.CopyDone).end();
}

export function writeCopyFail(w: MessageWriter, message: string): MessageWriter {
  return w.begin(FrontendType.CopyFail).cstring(message).end();
}

export function decodeCopyFail(buffer: Buffer, bodyStart: number, end: number): string {
  const r = reader.reset(buffer, bodyStart, end);
  const message = r.cstring();
  r.done();
  return message;
}
