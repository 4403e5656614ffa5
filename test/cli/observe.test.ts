/**
 * `l7warden observe` on a flow log recorded by a real proxy (Star Wars traffic) and
 * on the live admin stream: Hubble's filter meanings (values OR, flags AND, --not,
 * label selectors, --http-status prefixes, unanchored --http-path), -o json (the
 * records as written) and -o compact, --last; two live followers at once while a
 * client that never reads holds a third stream open.
 */
import t from 'tap';
import * as net from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startProxy, type RunningProxy } from '../../src/cli/run.js';
import { observe } from '../../src/cli/observe.js';
import { main } from '../../src/cli/commands.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { startCaptureUpstream, type CaptureUpstream } from '../helpers/capture-upstream.js';
import { h1Request } from '../helpers/clients.js';

const TIE = '127.0.0.10';
const XWING = '127.0.0.11';

let proxy: RunningProxy;
let up: CaptureUpstream;
let port = 0;
let server = '';
let dir = '';
let file = '';
let written: string[] = [];

function io() {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l) } };
}

async function run(args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const c = io();
  const code = await observe(args, c.io);
  return { code, out: c.out, err: c.err };
}

const flowsOf = (lines: string[]) => lines.map((l) => JSON.parse(l).flow);

t.before(async () => {
  up = await startCaptureUpstream();
  dir = await mkdtemp(join(tmpdir(), 'l7w-observe-'));
  file = join(dir, 'flows.json');
  const cfg = await starWarsDir({ upstream: up.url, flowLogFile: file });
  t.teardown(cfg.cleanup);
  proxy = await startProxy({ configDir: cfg.dir, ephemeralPorts: true });
  port = proxy.listeners[0]!.address.port;
  server = `127.0.0.1:${proxy.admin!.port}`;
  // Recorded session: 2 allowed landings, 1 exhaust-port (L7 deny), 1 xwing (L3 deny), 1 GET (L7 deny).
  await h1Request(port, { method: 'POST', path: '/v1/request-landing', from: TIE, body: 'x' });
  await h1Request(port, { method: 'POST', path: '/v1/request-landing', from: TIE, body: 'x' });
  await h1Request(port, { method: 'PUT', path: '/v1/exhaust-port', from: TIE });
  await h1Request(port, { method: 'POST', path: '/v1/request-landing', from: XWING });
  await h1Request(port, { method: 'GET', path: '/v1/request-landing', from: TIE });
  for (let i = 0; i < 100; i++) {
    written = (await readFile(file, 'utf8')).split('\n').filter(Boolean);
    if (written.length >= 10) break;
    await new Promise((r) => setTimeout(r, 20));
  }
});
t.teardown(async () => {
  await proxy?.close(0);
  await up?.close();
  await rm(dir, { recursive: true, force: true });
});

t.test('recorded file: -o json prints the records as written', async (t) => {
  t.equal(written.length, 10);
  const r = await run(['--file', file, '-o', 'json']);
  t.equal(r.code, 0);
  t.same(r.out, written);
});

t.test('filters on a recorded file', async (t) => {
  const count = async (...args: string[]) => (await run(['--file', file, '-o', 'json', ...args])).out.length;
  t.equal(await count('--verdict', 'DROPPED'), 3);
  t.equal(await count('--verdict', 'DROPPED', '--verdict', 'FORWARDED'), 10, 'values of one flag OR');
  t.equal(await count('--verdict', 'DROPPED', '--http-method', 'put'), 1, 'flags AND; method case-insensitive');
  t.equal(await count('--not', '--verdict', 'DROPPED'), 7, '--not negates the next flag');
  t.equal(await count('--not', '--verdict', 'DROPPED', '--http-method', 'POST'), 5, 'a negated flag ANDs with the others');
  t.equal(await count('--http-status', '403'), 3);
  t.equal(await count('--http-status', '4+'), 3, 'prefix form');
  t.equal(await count('--http-status', '2+'), 2);
  t.equal(await count('--http-status', '20+'), 2);
  t.equal(await count('--http-status', '5+'), 0);
  t.equal(await count('--http-path', 'exhaust'), 2, 'unanchored regex on the path');
  t.equal(await count('--http-path', '^/v1/(request|exhaust)-'), 10);
  t.equal(await count('--http-path', '^exhaust'), 0);
  t.equal(await count('--from-label', 'class=xwing'), 1, 'keys without source are any:');
  t.equal(await count('--from-label', 'k8s:class=xwing'), 1);
  t.equal(await count('--from-label', 'class in (xwing, tiefighter)'), 5, 'requests only: replies come from deathstar');
  t.equal(await count('--from-label', 'class!=tiefighter'), 6, 'xwing request + deathstar replies');
  t.equal(await count('--from-label', 'org=empire,class=tiefighter'), 4, 'comma ANDs requirements');
  t.equal(await count('--from-label', '!class'), 0);
  t.equal(await count('--from-label', 'class'), 10);
  t.equal(await count('--to-label', 'class=deathstar'), 5);
  t.equal(await count('--from-label', 'class=xwing', '--from-label', 'class=deathstar'), 6, 'two selectors OR');
  t.equal(await count('--namespace', 'default'), 10);
  t.equal(await count('-n', 'kube-system'), 0);
  t.equal(await count('--protocol', 'http'), 10);
  t.equal(await count('--protocol', 'tcp'), 10);
  t.equal(await count('--protocol', 'dns'), 0);
  t.equal(await count('--type', 'l7'), 10);
  t.equal(await count('--type', 'drop'), 0);
  const tieId = flowsOf(written).find((f) => f.source.pod_name === 'tiefighter').source.identity as number;
  t.equal(await count('--from-identity', String(tieId)), 4);
  t.equal(await count('--to-identity', String(tieId)), 4);
  t.equal(await count('--from-identity', 'world'), 0, 'reserved names');
  t.equal(await count('--last', '3'), 3);
  const last = (await run(['--file', file, '-o', 'json', '--last', '2'])).out;
  t.same(last, written.slice(-2), '--last keeps the newest');
});

t.test('-o compact is hubble\'s one-line form', async (t) => {
  const r = await run(['--file', file, '--verdict', 'DROPPED', '--http-method', 'PUT']);
  t.equal(r.out.length, 1);
  t.match(
    r.out[0]!,
    /^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d\.\d{3}: default\/tiefighter:\d+ \(ID:\d+\) -> default\/deathstar:80 \(ID:\d+\) http-request DROPPED \(HTTP\/1\.1 PUT http:\/\/deathstar\/v1\/exhaust-port\)$/,
  );
  const resp = await run(['--file', file, '--http-status', '403', '--http-method', 'PUT']);
  t.match(resp.out[0]!, /default\/tiefighter:\d+ \(ID:\d+\) <- default\/deathstar:80 \(ID:\d+\) http-response FORWARDED \(HTTP\/1\.1 403 \d+ms \(PUT http:\/\/deathstar\/v1\/exhaust-port\)\)$/);
});

t.test('a record whose fields have the wrong types is left out, not a crash; --last keeps the newest', async (t) => {
  const first = JSON.parse(written[0]!);
  const bad = JSON.stringify({ flow: { ...first.flow, source: { ...first.flow.source, labels: 'notalist' }, destination: { labels: [1, null] } } });
  const mixed = join(dir, 'mixed.json');
  const { writeFile } = await import('node:fs/promises');
  await writeFile(mixed, ['null', bad, ...written, bad].join('\n') + '\n');
  const compact = await run(['--file', mixed, '-o', 'compact']);
  t.equal(compact.code, 0);
  t.equal(compact.out.length, written.length, 'every good record, none of the bad');
  const labelled = await run(['--file', mixed, '-o', 'json', '--from-label', 'org=empire']);
  t.equal(labelled.code, 0);
  t.ok(labelled.out.length > 0 && labelled.out.every((l) => written.includes(l)));
  // -o json prints records as written, a bad one too (nothing of it is read without filters).
  const last = await run(['--file', mixed, '-o', 'json', '--last', '3']);
  t.same(last.out, [...written.slice(-2), bad]);
  const lastCompact = await run(['--file', mixed, '-o', 'compact', '--last', '2']);
  t.same(lastCompact.out, compact.out.slice(-2));
});

t.test('usage errors exit 2; an unreadable file exits 1', async (t) => {
  const c = io();
  t.equal(await main(['observe', '--file', file, '--http-status', '4x'], c.io), 2);
  t.equal(await main(['observe', '--file', file, '--not'], c.io), 2);
  t.equal(await main(['observe', '--file', file, '--verdict', 'MAYBE'], c.io), 2);
  t.equal(await main(['observe', '--file', file, '--http-path', '(a'], c.io), 2);
  t.equal(await main(['observe', '--file', file, '--from-identity', 'nobody'], c.io), 2);
  t.equal(await main(['observe', '--file', file, '-o', 'yaml'], c.io), 2);
  t.equal(await main(['observe', '--file', join(dir, 'missing.json')], c.io), 1);
});

t.test('live stream: --last from the ring without --follow', async (t) => {
  const r = await run(['--server', server, '-o', 'json', '--last', '4', '--verdict', 'FORWARDED']);
  t.equal(r.code, 0);
  t.same(r.out, written.filter((l) => JSON.parse(l).flow.verdict === 'FORWARDED').slice(-4));
});

t.test('live stream: two followers at once, a client that never reads does not block', async (t) => {
  // A client that opens the stream and never reads.
  const stalled = net.connect({ host: '127.0.0.1', port: proxy.admin!.port });
  await new Promise<void>((r) => stalled.once('connect', () => r()));
  stalled.pause();
  stalled.write('GET /flows?follow=1 HTTP/1.1\r\nHost: x\r\n\r\n');
  t.teardown(() => stalled.destroy());

  const ac = new AbortController();
  const a = io();
  const b = io();
  const ra = observe(['--server', server, '--follow', '-o', 'json', '--http-method', 'PUT'], a.io, ac.signal);
  const rb = observe(['--server', server, '--follow', '--last', '1', '--from-label', 'class=tiefighter'], b.io, ac.signal);
  await new Promise((r) => setTimeout(r, 200));
  const N = 20;
  const started = Date.now();
  for (let i = 0; i < N; i++) {
    const res = await h1Request(port, { method: i % 2 ? 'PUT' : 'POST', path: i % 2 ? '/v1/exhaust-port' : '/v1/request-landing', from: TIE, body: 'x' });
    t.equal(res.status, i % 2 ? 403 : 200);
  }
  t.ok(Date.now() - started < 5000, 'requests answered promptly with a stalled stream reader');
  for (let i = 0; i < 200 && (a.out.length < N || b.out.length < N + 1); i++) await new Promise((r) => setTimeout(r, 10));
  ac.abort();
  t.equal(await ra, 0);
  t.equal(await rb, 0);
  t.equal(a.out.length, N, 'reader A: PUT requests and their responses');
  t.ok(flowsOf(a.out).every((f) => f.l7.http.method === 'PUT'));
  t.equal(b.out.length, 1 + N, 'reader B: the last recorded match, then every tiefighter request');
  t.match(b.out[b.out.length - 1]!, /default\/tiefighter:\d+ \(ID:\d+\) -> default\/deathstar:80/);
});
