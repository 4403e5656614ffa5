/**
 * A located configuration problem. Every loader and validator reports these, and
 * reports all of them in one run (a user fixes a file once, not once per error).
 * Rendered as `file:line:col: field.path: message` (SPEC.md "Configuration").
 */
export interface ConfigIssue {
  readonly file: string;
  readonly line: number; // 1-based
  readonly col: number;  // 1-based
  readonly path: string; // e.g. spec.ingress[0].toPorts[0].ports[0].port ("" for the whole document)
  readonly message: string;
}

export function formatIssue(i: ConfigIssue): string {
  return i.path ? `${i.file}:${i.line}:${i.col}: ${i.path}: ${i.message}` : `${i.file}:${i.line}:${i.col}: ${i.message}`;
}

/** Where a document (or field) came from, kept so later stages can still point at the file. */
export interface SourcePos {
  readonly file: string;
  readonly line: number;
  readonly col: number;
}
