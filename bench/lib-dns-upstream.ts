/**
 * The DNS benchmark's upstream: the test upstream (dns-packet decode + encode per
 * query, A 127.0.0.x for every name) in a process of its own. Prints its port.
 */
import { TestDnsUpstream } from '../test/helpers/dns-upstream.js';

const u = await TestDnsUpstream.start({ log: false, answerAll: true, ttl: 300 });
process.stdout.write(`${u.port}\n`);
process.on('SIGTERM', () => {
  void u.close().then(() => process.exit(0));
});
