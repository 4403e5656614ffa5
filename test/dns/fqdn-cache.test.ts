import t from 'tap';
import { FqdnCache, type FqdnIpSink } from '../../src/fqdn/cache.js';
import { compileOne, normalizeQName } from '../../src/policy/dns-pattern.js';
import type { FqdnSelectorInfo, PolicySnapshot } from '../../src/policy/types.js';

function selectors(...rules: ({ matchName: string } | { matchPattern: string })[]): FqdnSelectorInfo[] {
  return rules.map((r) => {
    const m = compileOne(r);
    const key = 'matchName' in r ? r.matchName : r.matchPattern;
    return { key, matches: (n: string) => m.test(n) };
  });
}

/** Only what FqdnCache reads from a snapshot: its version and toFQDNs selectors. */
function snap(version: number, sels: FqdnSelectorInfo[]): PolicySnapshot {
  return { version, fqdnSelectors: sels } as unknown as PolicySnapshot;
}

class RecordingSink implements FqdnIpSink {
  readonly state = new Map<string, readonly string[]>();
  calls = 0;
  setFqdnSelectors(ip: string, keys: readonly string[]): void {
    this.calls++;
    if (keys.length) this.state.set(ip, [...keys]);
    else this.state.delete(ip);
  }
}

t.test('learned IPs get the keys of the selectors matching the name', async (t) => {
  let now = 1_000_000;
  const sink = new RecordingSink();
  const c = new FqdnCache(sink, { minTtlSeconds: 0, maxIpsPerName: 10, now: () => now });
  c.setSnapshot(snap(1, selectors({ matchName: 'api.github.com' }, { matchPattern: '*.github.com' })));
  c.learn(normalizeQName('api.github.com'), ['127.0.0.20', '127.0.0.21'], 60);
  t.same(sink.state.get('127.0.0.20'), ['*.github.com', 'api.github.com']);
  c.learn('www.github.com.', ['127.0.0.22'], 60);
  t.same(sink.state.get('127.0.0.22'), ['*.github.com']);
  c.learn('github.com.', ['127.0.0.23'], 60);
  t.notOk(sink.state.has('127.0.0.23'), 'not selected by any toFQDNs: no FQDN identity');
  t.same(c.lookup('github.com.'), ['127.0.0.23'], 'but the name is remembered');
  // One IP serving two names gets the union.
  c.learn('www.github.com.', ['127.0.0.20'], 60);
  t.same(sink.state.get('127.0.0.20'), ['*.github.com', 'api.github.com']);
  t.same(c.namesFor('127.0.0.20'), ['api.github.com.', 'www.github.com.']);

  // TTL expiry: the sweep removes entries; 127.0.0.20 keeps its www name until that one expires.
  now += 30_000;
  c.learn('www.github.com.', ['127.0.0.20'], 120);
  now += 31_000;
  c.sweep();
  t.same(sink.state.get('127.0.0.20'), ['*.github.com'], 'api.github.com expired, www live');
  t.notOk(sink.state.has('127.0.0.21'), 'expired IP removed from the overlay');
  t.same(c.lookup('api.github.com.'), []);
  now += 120_000;
  c.sweep();
  t.equal(sink.state.size, 0, 'everything expired');
  t.same(c.size, { names: 0, ips: 0 });
});

t.test('min TTL keeps entries at least dnsMinTtlSeconds', async (t) => {
  let now = 0;
  const sink = new RecordingSink();
  const c = new FqdnCache(sink, { minTtlSeconds: 300, maxIpsPerName: 10, now: () => now });
  c.setSnapshot(snap(1, selectors({ matchPattern: '*' })));
  c.learn('a.example.', ['127.0.0.30'], 0);
  t.equal(c.expiresAt('a.example.', '127.0.0.30'), 300_000);
  now = 299_999;
  c.sweep();
  t.ok(sink.state.has('127.0.0.30'));
  now = 300_000;
  c.sweep();
  t.ok(sink.state.has('127.0.0.30'), 'still valid at the expiry instant (Cilium: isExpiredBy is now.After(expiry))');
  now = 300_001;
  c.sweep();
  t.notOk(sink.state.has('127.0.0.30'));
  // A shorter TTL never shortens an entry.
  const c2 = new FqdnCache(sink, { minTtlSeconds: 0, maxIpsPerName: 10, now: () => now });
  c2.setSnapshot(snap(1, selectors({ matchPattern: '*' })));
  c2.learn('b.example.', ['127.0.0.31'], 100);
  c2.learn('b.example.', ['127.0.0.31'], 1);
  t.equal(c2.expiresAt('b.example.', '127.0.0.31'), now + 100_000);
});

t.test('max TTL clamps how long an entry lives (dnsMaxTtlSeconds), never below the min TTL', async (t) => {
  let now = 0;
  const sink = new RecordingSink();
  const c = new FqdnCache(sink, { minTtlSeconds: 60, maxTtlSeconds: 3600, maxIpsPerName: 10, now: () => now });
  c.setSnapshot(snap(1, selectors({ matchPattern: '*' })));
  // RFC 2181's largest TTL (about 68 years) would keep the IP allowed that long.
  c.learn('long.example.', ['127.0.0.40'], 0x7fffffff);
  t.equal(c.expiresAt('long.example.', '127.0.0.40'), 3_600_000);
  c.learn('short.example.', ['127.0.0.41'], 1);
  t.equal(c.expiresAt('short.example.', '127.0.0.41'), 60_000, 'the min still applies below the max');
  now = 3_600_001;
  c.sweep();
  t.notOk(sink.state.has('127.0.0.40'), 'gone past the max, whatever the answer said');
  // Absent (the default, as Cilium): no maximum.
  const open = new FqdnCache(sink, { minTtlSeconds: 0, maxIpsPerName: 10, now: () => now });
  open.setSnapshot(snap(1, selectors({ matchPattern: '*' })));
  open.learn('long.example.', ['127.0.0.42'], 86_400 * 7);
  t.equal(open.expiresAt('long.example.', '127.0.0.42'), now + 86_400 * 7 * 1000);
  // A max below the min is lifted to the min (validation refuses it in config).
  const odd = new FqdnCache(sink, { minTtlSeconds: 300, maxTtlSeconds: 10, maxIpsPerName: 10, now: () => now });
  odd.setSnapshot(snap(1, selectors({ matchPattern: '*' })));
  odd.learn('x.example.', ['127.0.0.43'], 0);
  t.equal(odd.expiresAt('x.example.', '127.0.0.43'), now + 300_000);
});

t.test('cap on IPs per name evicts the soonest-expiring, never the fresh answer', async (t) => {
  let now = 0;
  const sink = new RecordingSink();
  const c = new FqdnCache(sink, { minTtlSeconds: 0, maxIpsPerName: 3, now: () => now });
  c.setSnapshot(snap(1, selectors({ matchName: 'cdn.example' })));
  c.learn('cdn.example.', ['127.0.0.1', '127.0.0.2'], 10);
  now = 1000;
  c.learn('cdn.example.', ['127.0.0.3'], 100);
  c.learn('cdn.example.', ['127.0.0.4', '127.0.0.5'], 5);
  t.same(c.lookup('cdn.example.').sort(), ['127.0.0.3', '127.0.0.4', '127.0.0.5']);
  t.notOk(sink.state.has('127.0.0.1'));
  t.notOk(sink.state.has('127.0.0.2'));
  t.equal(c.stats.evicted, 2);
});

t.test('a snapshot swap recomputes every IP', async (t) => {
  const sink = new RecordingSink();
  const c = new FqdnCache(sink, { minTtlSeconds: 0, maxIpsPerName: 10 });
  c.setSnapshot(snap(1, selectors({ matchName: 'a.example' })));
  c.learn('a.example.', ['127.0.0.40'], 60);
  c.learn('b.example.', ['127.0.0.41'], 60);
  t.same([...sink.state.keys()], ['127.0.0.40']);
  c.setSnapshot(snap(2, selectors({ matchPattern: '*.example' })));
  t.same(sink.state.get('127.0.0.40'), ['*.example']);
  t.same(sink.state.get('127.0.0.41'), ['*.example'], 'a new rule selects an IP learned before');
  c.setSnapshot(snap(3, []));
  t.equal(sink.state.size, 0, 'rules gone: FQDN identities gone');
});

t.test('a re-labelling that throws half-way is done again by the next setSnapshot of the same snapshot', async (t) => {
  const sink = new RecordingSink();
  const c = new FqdnCache(sink, { minTtlSeconds: 0, maxIpsPerName: 10, now: () => 0 });
  c.setSnapshot(snap(1, selectors({ matchPattern: '*.example' })));
  c.learn('a.example.', ['127.0.0.50'], 60);
  const next = snap(2, selectors({ matchName: 'a.example' }));
  const real = sink.setFqdnSelectors.bind(sink);
  sink.setFqdnSelectors = () => {
    throw new Error('boom');
  };
  t.throws(() => c.setSnapshot(next));
  sink.setFqdnSelectors = real;
  c.setSnapshot(next);
  t.same(sink.state.get('127.0.0.50'), ['a.example'], 'not skipped as already done');
});

t.test('the sweep timer is unref’d and stoppable', async (t) => {
  const c = new FqdnCache(new RecordingSink(), { minTtlSeconds: 0, maxIpsPerName: 10, sweepIntervalMs: 5 });
  c.start();
  c.learn('x.', ['127.0.0.9'], 0);
  await new Promise((r) => setTimeout(r, 30));
  t.same(c.size, { names: 0, ips: 0 }, 'swept by the timer');
  c.stop();
});
