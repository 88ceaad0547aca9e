/**
 * One HTTP(S) request to an agent's REST API with node:http(s), so that a private CA and a client certificate can
 * be given per request (the global fetch takes neither without an extra dependency).
 */
import http from 'node:http';
import https from 'node:https';
import type { ApiClientTls } from '../config/api-tls.js';

export interface ApiRequest {
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  timeoutMs: number;
  /** For https URLs; null: node's defaults (the system's CAs). */
  tls?: ApiClientTls | null;
}

export interface ApiResponse {
  status: number;
  text: string;
}

const MAX_BODY = 1024 * 1024;

/** Rejects with node's error (its `code` says why: ECONNREFUSED, UNABLE_TO_VERIFY_LEAF_SIGNATURE...) or on timeout. */
export function apiRequest(url: string, request: ApiRequest): Promise<ApiResponse> {
  const target = new URL(url);
  const secure = target.protocol === 'https:';
  const tls = request.tls ?? null;
  return new Promise((resolve, reject) => {
    const options: https.RequestOptions = {
      method: request.method ?? 'GET',
      headers: { ...(request.headers ?? {}), ...(request.body === undefined ? {} : { 'content-length': String(Buffer.byteLength(request.body)) }) },
      ...(secure && tls !== null
        ? { ...(tls.ca ? { ca: tls.ca } : {}), ...(tls.cert ? { cert: tls.cert } : {}), ...(tls.key ? { key: tls.key } : {}) }
        : {}),
    };
    const req = (secure ? https : http).request(target, options, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_BODY) req.destroy(new Error(`the answer of ${url} is larger than ${MAX_BODY} bytes`));
        else chunks.push(chunk);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    const timer = setTimeout(
      () => req.destroy(Object.assign(new Error(`no answer within ${request.timeoutMs} ms`), { code: 'ETIMEDOUT' })),
      request.timeoutMs,
    );
    req.on('close', () => clearTimeout(timer));
    req.on('error', reject);
    req.end(request.body);
  });
}
