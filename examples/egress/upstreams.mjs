#!/usr/bin/env node
/**
 * The "internet" for examples/egress, all on loopback:
 *  - a tiny DNS server (UDP + TCP) on 127.0.0.1:5300 answering the names below with
 *    127.0.0.x addresses (anything else: NXDOMAIN);
 *  - an HTTP server on each of those addresses, port 8080 (api.stripe.com: 8443),
 *    answering `hello from <name> (<ip>) <method> <path>`.
 *
 *   node examples/egress/upstreams.mjs            # Ctrl-C to stop
 *
 * Loopback addresses other than 127.0.0.1 work out of the box on Linux; on macOS
 * add them first (`sudo ifconfig lo0 alias 127.0.0.40` …).
 * `startUpstreams()` is exported for the example's test (ports 0 = any free port).
 */
import dgram from 'node:dgram';
import http from 'node:http';
import net from 'node:net';
import { pathToFileURL } from 'node:url';
import dnsPacket from 'dns-packet';

export const ZONE = {
  'cilium.io': '127.0.0.40',
  'sub.cilium.io': '127.0.0.41',
  'anothersub.cilium.io': '127.0.0.42',
  'service1.api.cilium.io': '127.0.0.43',
  'special-region1-service.api.cilium.io': '127.0.0.44',
  'region1-service.api.cilium.io': '127.0.0.45',
  'github.com': '127.0.0.46',
  'api.stripe.com': '127.0.0.50',
};

function answer(msg) {
  let q;
  try {
    q = dnsPacket.decode(msg);
  } catch {
    return undefined;
  }
  const question = q.questions?.[0];
  if (!question || q.type !== 'query') return undefined;
  const name = question.name.toLowerCase().replace(/\.$/, '');
  const ip = ZONE[name];
  const answers = ip && question.type === 'A' ? [{ name: question.name, type: 'A', class: 'IN', ttl: 60, data: ip }] : [];
  const rcode = ip ? 0 : 3; // NOERROR / NXDOMAIN
  return dnsPacket.encode({
    type: 'response',
    id: q.id,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | rcode,
    questions: [question],
    answers,
  });
}

/**
 * Start the DNS server and the HTTP servers.
 * @param {{ dnsHost?: string, dnsPort?: number, httpPort?: number, stripePort?: number }} opts
 */
export async function startUpstreams(opts = {}) {
  const dnsHost = opts.dnsHost ?? '127.0.0.1';
  const closers = [];
  const tcp = net.createServer((s) => {
    s.on('error', () => {});
    let acc = Buffer.alloc(0);
    s.on('data', (d) => {
      acc = Buffer.concat([acc, d]);
      while (acc.length >= 2 && acc.length >= 2 + acc.readUInt16BE(0)) {
        const msg = acc.subarray(2, 2 + acc.readUInt16BE(0));
        acc = acc.subarray(2 + msg.length);
        const out = answer(msg);
        if (out) {
          const len = Buffer.alloc(2);
          len.writeUInt16BE(out.length);
          s.write(Buffer.concat([len, out]));
        }
      }
    });
  });
  await new Promise((r, j) => tcp.once('error', j).listen(opts.dnsPort ?? 5300, dnsHost, r));
  const dnsPort = tcp.address().port;
  const udp = dgram.createSocket('udp4');
  udp.on('message', (msg, rinfo) => {
    const out = answer(msg);
    if (out) udp.send(out, rinfo.port, rinfo.address);
  });
  await new Promise((r, j) => {
    udp.once('error', j);
    udp.bind(dnsPort, dnsHost, r);
  });
  closers.push(() => new Promise((r) => tcp.close(() => r())), () => new Promise((r) => udp.close(() => r())));

  const requests = [];
  let httpPort = opts.httpPort ?? 8080;
  let stripePort = opts.stripePort ?? 8443;
  for (const [name, ip] of Object.entries(ZONE)) {
    const server = http.createServer((req, res) => {
      requests.push({ name, ip, method: req.method, url: req.url, host: req.headers.host });
      req.resume();
      const body = `hello from ${name} (${ip}) ${req.method} ${req.url}\n`;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    const port = name === 'api.stripe.com' ? stripePort : httpPort;
    await new Promise((r, j) => server.once('error', j).listen(port, ip, r));
    const bound = server.address().port;
    // Port 0: the first server picks, the others follow on the same number.
    if (name === 'api.stripe.com') stripePort = bound;
    else httpPort = bound;
    closers.push(
      () =>
        new Promise((r) => {
          server.closeAllConnections();
          server.close(() => r());
        }),
    );
  }
  return {
    dnsPort,
    httpPort,
    stripePort,
    requests,
    close: () => Promise.all(closers.map((c) => c())),
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const u = await startUpstreams();
  console.error(`DNS on 127.0.0.1:${u.dnsPort}; HTTP on :${u.httpPort} (api.stripe.com on :${u.stripePort}) at:`);
  for (const [n, ip] of Object.entries(ZONE)) console.error(`  ${n.padEnd(40)} ${ip}`);
  const stop = () => u.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
