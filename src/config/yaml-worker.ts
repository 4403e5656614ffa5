/**
 * The parsing thread's entry (see yaml-thread.ts). `{id, text}` parses one file
 * and answers its first part; `{id, more: true}` asks for the next. A part is up to
 * DOCS_PER_MESSAGE located documents; the last one carries the file's errors and
 * warnings. Parts, one at a time on request, because the main thread decodes a
 * message in one go and drains every queued message in one turn: all 2,000
 * documents of a 1 MB file at once stalled it ~250 ms.
 */
import { parentPort } from 'node:worker_threads';
import { parseYaml, type ParsedYaml } from './yaml-tree.js';

const DOCS_PER_MESSAGE = 100;

const results = new Map<number, { parsed: ParsedYaml; next: number }>();

function send(id: number): void {
  const r = results.get(id);
  if (!r) return;
  const docs = r.parsed.documents;
  const from = r.next;
  r.next += DOCS_PER_MESSAGE;
  if (r.next < docs.length) {
    parentPort!.postMessage({ id, documents: docs.slice(from, r.next) });
    return;
  }
  results.delete(id);
  parentPort!.postMessage({ id, documents: docs.slice(from), errors: r.parsed.errors, warnings: r.parsed.warnings });
}

parentPort?.on('message', (m: { id: number; text?: string }) => {
  if (m.text !== undefined) results.set(m.id, { parsed: parseYaml(m.text), next: 0 });
  send(m.id);
});
