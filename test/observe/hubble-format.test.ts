// The flow records' time and uuid fields, built without a Date per millisecond or a
// randomUUID per record, are exactly what JSON.stringify / RFC 9562 give.
import t from 'tap';
import { isoTimeJson, jsonInner, jsonString, newUuid } from '../../src/observe/hubble.js';

t.test('isoTimeJson equals JSON.stringify(new Date(ms).toISOString())', async (t) => {
  const base = Date.UTC(2026, 10, 21, 23, 59, 58, 990);
  const times: number[] = [];
  // Across a second, a minute, an hour and a day boundary, every sub-second width.
  for (let ms = base; ms < base + 2_100; ms += 7) times.push(ms);
  times.push(base + 2_000, base + 2_001, base + 2_010, base + 2_100, base + 1_000, base, 0, 999, 1_000, 86_399_999);
  let bad = 0;
  for (const ms of times) {
    // Twice: the second call answers from what the first remembered.
    for (let k = 0; k < 2; k++) if (isoTimeJson(ms) !== JSON.stringify(new Date(ms).toISOString())) bad++;
  }
  t.equal(bad, 0, `${times.length} times, each asked twice`);
  t.equal(isoTimeJson(base + 0.5), JSON.stringify(new Date(base + 0.5).toISOString()), 'a fractional time');
  t.equal(isoTimeJson(Date.UTC(2026, 0, 1, 0, 0, 0, 5)), '"2026-01-01T00:00:00.005Z"');
});

t.test('newUuid: version 4, the RFC variant, no repeats across batches', async (t) => {
  const v4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
  const seen = new Set<string>();
  let malformed = 0;
  for (let i = 0; i < 3_000; i++) {
    const u = newUuid();
    if (!v4.test(u)) malformed++;
    seen.add(u);
  }
  t.equal(malformed, 0);
  t.equal(seen.size, 3_000, 'all distinct (more than ten batches)');
  // The random nibbles are not stuck: every hex digit shows up in the first group.
  const firstDigits = new Set([...seen].map((u) => u[0]));
  t.equal(firstDigits.size, 16);
});

t.test('jsonString / jsonInner are JSON.stringify for every kind of string', async (t) => {
  const samples = ['', 'plain', 'http://deathstar/v1/x?y=1', 'a"b', 'a\\b', 'tab\there', '\u0000', '\u001f', '\u007f', 'é', '\u2028', '\u{1F680}', '\ud800', 'x\udfff', '\udfff\ud800'];
  // (labels as code points: a raw U+2028 in a test name would break the TAP stream)
  const label = (s: string) => [...s].map((c) => 'U+' + c.codePointAt(0)!.toString(16)).join(' ') || 'empty';
  for (const s of samples) {
    t.equal(jsonString(s), JSON.stringify(s), label(s));
    t.equal('"' + jsonInner(s) + '"', JSON.stringify(s), 'inner: ' + label(s));
  }
  // Every code unit below 0x800 and the surrogates, one at a time.
  let bad = 0;
  for (let c = 0; c < 0x800; c++) if (jsonString(String.fromCharCode(c)) !== JSON.stringify(String.fromCharCode(c))) bad++;
  for (let c = 0xd700; c < 0xe100; c++) if (jsonString(String.fromCharCode(c)) !== JSON.stringify(String.fromCharCode(c))) bad++;
  t.equal(bad, 0, 'no single code unit differs');
});
