import t from 'tap';
import { IPCache, normalizeIP, parsePrefix, prefixContains } from '../../src/identity/ipcache.js';
import { makeIdentity } from '../../src/identity/labels.js';

const world = makeIdentity(2, ['reserved:world']);
const id = (n: number) => makeIdentity(n, [`k8s:n=${n}`]);

t.test('longest prefix wins; unknown is world', async (t) => {
  const c = new IPCache(
    [
      ['10.0.0.0/8', id(300)],
      ['10.96.0.0/12', id(301)],
      ['10.96.1.5', id(302)],
      ['2001:db8::/32', id(400)],
      ['2001:db8:1::/48', id(401)],
      ['2001:db8:1::7/128', id(402)],
    ],
    world,
  );
  t.equal(c.lookup('10.1.2.3').id, 300);
  t.equal(c.lookup('10.97.0.1').id, 301);
  t.equal(c.lookup('10.96.1.5').id, 302);
  t.equal(c.lookup('11.0.0.1').id, 2);
  t.equal(c.lookup('::ffff:10.96.1.5').id, 302, 'IPv4-mapped IPv6 is IPv4');
  t.equal(c.lookup('2001:db8:2::1').id, 400);
  t.equal(c.lookup('2001:DB8:1:0::9').id, 401);
  t.equal(c.lookup('2001:db8:1::7').id, 402);
  t.equal(c.lookup('2001:db9::1').id, 2);
  t.equal(c.lookup('not-an-ip').id, 2);
});

t.test('overlay: upsert, remove, wins at equal length', async (t) => {
  const c = new IPCache([['1.2.3.0/24', id(300)]], world);
  c.upsert('1.2.3.4', id(500));
  t.equal(c.lookup('1.2.3.4').id, 500);
  t.equal(c.lookup('1.2.3.5').id, 300);
  c.upsert('1.2.3.0/24', id(501));
  t.equal(c.lookup('1.2.3.5').id, 501, 'overlay wins at equal prefix length');
  t.ok(c.remove('1.2.3.4/32'));
  t.notOk(c.remove('1.2.3.4/32'));
  t.equal(c.lookup('1.2.3.4').id, 501);
  c.remove('1.2.3.0/24');
  t.equal(c.lookup('1.2.3.4').id, 300);
  c.upsert('2001:db8::1', id(600));
  t.equal(c.lookup('2001:0db8:0000::1').id, 600);
});

t.test('prefix helpers', async (t) => {
  t.equal(parsePrefix('10.1.2.3/8').text, '10.0.0.0/8');
  t.equal(parsePrefix('2001:db8:ffff::/32').text, '2001:db8::/32');
  t.ok(prefixContains('10.0.0.0/8', '10.96.0.0/12'));
  t.notOk(prefixContains('10.96.0.0/12', '10.0.0.0/8'));
  t.notOk(prefixContains('10.0.0.0/8', '2001:db8::/32'));
  t.ok(prefixContains('2001:db8::/32', '2001:db8:1::/48'));
  t.equal(normalizeIP('::ffff:1.2.3.4'), '1.2.3.4');
  t.throws(() => parsePrefix('10.0.0.0/33'));
});
