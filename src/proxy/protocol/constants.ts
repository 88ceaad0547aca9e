/**
 * The byte constants of PostgreSQL's protocol 3.0 that the proxy reads or writes, by name (protocol-message-formats
 * in the PostgreSQL 15 documentation). Plain `as const` objects of small integers: V8 folds the loads, so naming a
 * byte costs nothing on the hot path.
 */

/** Type bytes of messages a client sends. */
export const FrontendType = {
  Bind: 0x42, // 'B'
  Close: 0x43, // 'C'
  CopyData: 0x64, // 'd'
  CopyDone: 0x63, // 'c'
  CopyFail: 0x66, // 'f'
  Describe: 0x44, // 'D'
  Execute: 0x45, // 'E'
  Flush: 0x48, // 'H'
  FunctionCall: 0x46, // 'F'
  Parse: 0x50, // 'P'
  /** PasswordMessage, SASLInitialResponse and SASLResponse share it; the authentication step tells them apart. */
  Password: 0x70, // 'p'
  Query: 0x51, // 'Q'
  Sync: 0x53, // 'S'
  Terminate: 0x58, // 'X'
} as const;

/** Type bytes of messages a server sends. */
export const BackendType = {
  Authentication: 0x52, // 'R'
  BackendKeyData: 0x4b, // 'K'
  BindComplete: 0x32, // '2'
  CloseComplete: 0x33, // '3'
  CommandComplete: 0x43, // 'C'
  CopyBothResponse: 0x57, // 'W'
  CopyData: 0x64, // 'd'
  CopyDone: 0x63, // 'c'
  CopyInResponse: 0x47, // 'G'
  CopyOutResponse: 0x48, // 'H'
  DataRow: 0x44, // 'D'
  EmptyQueryResponse: 0x49, // 'I'
  ErrorResponse: 0x45, // 'E'
  FunctionCallResponse: 0x56, // 'V'
  NegotiateProtocolVersion: 0x76, // 'v'
  NoData: 0x6e, // 'n'
  NoticeResponse: 0x4e, // 'N'
  NotificationResponse: 0x41, // 'A'
  ParameterDescription: 0x74, // 't'
  ParameterStatus: 0x53, // 'S'
  ParseComplete: 0x31, // '1'
  PortalSuspended: 0x73, // 's'
  ReadyForQuery: 0x5a, // 'Z'
  RowDescription: 0x54, // 'T'
} as const;

/** The status byte of ReadyForQuery. */
export const TransactionStatusByte = {
  Idle: 0x49, // 'I'
  InTransaction: 0x54, // 'T'
  /** In a failed transaction block: everything up to ROLLBACK is refused. */
  Failed: 0x45, // 'E'
} as const;

/** The first body byte of Describe and Close: what the name that follows refers to. */
export const TargetKindByte = {
  Statement: 0x53, // 'S'
  Portal: 0x50, // 'P'
} as const;

/** The one-byte answer a server gives to SSLRequest (and to GSSENCRequest) before any message. */
export const SslResponse = {
  Accept: 0x53, // 'S'
  Refuse: 0x4e, // 'N'
} as const;

/** Field type bytes in ErrorResponse and NoticeResponse bodies. */
export const ErrorField = {
  Severity: 0x53, // 'S'
  SeverityNonLocalized: 0x56, // 'V'
  Code: 0x43, // 'C'
  Message: 0x4d, // 'M'
  Detail: 0x44, // 'D'
  Hint: 0x48, // 'H'
  Position: 0x50, // 'P'
  InternalPosition: 0x70, // 'p'
  InternalQuery: 0x71, // 'q'
  Where: 0x57, // 'W'
  Schema: 0x73, // 's'
  Table: 0x74, // 't'
  Column: 0x63, // 'c'
  DataType: 0x64, // 'd'
  Constraint: 0x6e, // 'n'
  File: 0x46, // 'F'
  Line: 0x4c, // 'L'
  Routine: 0x52, // 'R'
} as const;
