/**
 * Bench upstream: a minimal Node HTTP/1.1 server and an HTTP/2 cleartext server
 * answering a 2-byte body ("ok"), as ANCHORS.md's upstream. Prints
 * `h1 <port>` and `h2 <port>`.
 */
import * as http from 'node:http';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';

const h1 = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 });
    res.end('ok');
  });
});
h1.keepAliveTimeout = 60_000;
h1.listen(0, '127.0.0.1', () => console.log(`h1 ${(h1.address() as AddressInfo).port}`));

const h2 = http2.createServer();
h2.on('stream', (stream) => {
  stream.on('error', () => {});
  stream.resume();
  stream.on('end', () => {
    stream.respond({ ':status': 200, 'content-type': 'text/plain', 'content-length': 2 });
    stream.end('ok');
  });
});
h2.listen(0, '127.0.0.1', () => console.log(`h2 ${(h2.address() as AddressInfo).port}`));
process.on('SIGTERM', () => process.exit(0));
