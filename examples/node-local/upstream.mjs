// The deathstar API on 127.0.0.1:18080 for the example (answers every request with
// what it received, so allowed calls are visible).
import * as http from 'node:http';
http
  .createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const body = `deathstar: ${req.method} ${req.url}\n`;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  })
  .listen(18080, '127.0.0.1', () => console.log('deathstar API on 127.0.0.1:18080'));
