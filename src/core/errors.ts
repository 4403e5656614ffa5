/**
 * Every error that crosses a module boundary is a WardenError with a stable code,
 * so callers branch on `code`, never on message text (undici's habit).
 */
export type ErrorCode =
  | 'L7W_ERR_CONFIG'            // invalid configuration (carries ConfigIssue list)
  | 'L7W_ERR_USAGE'             // bad command line
  | 'L7W_ERR_POLICY_COMPILE'    // policy could not be compiled into a snapshot
  | 'L7W_ERR_REGEX'             // pattern the linear-time engine cannot run
  | 'L7W_ERR_IDENTITY'          // identity allocation / lookup failure
  | 'L7W_ERR_TLS'               // certificate / key material missing or invalid
  | 'L7W_ERR_UPSTREAM_CONNECT'  // upstream refused / unreachable
  | 'L7W_ERR_UPSTREAM_TIMEOUT'
  | 'L7W_ERR_UPSTREAM_TLS'      // upstream certificate verification failed
  | 'L7W_ERR_UPSTREAM_PROTOCOL' // upstream answer no client may be sent (h2 :status outside 200-599)
  | 'L7W_ERR_PROXY_PROTOCOL'    // missing or malformed PROXY protocol header
  | 'L7W_ERR_BAD_REQUEST'       // malformed / ambiguous client request
  | 'L7W_ERR_DNS'               // malformed DNS message
  | 'L7W_ERR_INTERNAL';

export class WardenError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WardenError';
    this.code = code;
  }
}
