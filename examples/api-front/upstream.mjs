// The orders API on 127.0.0.1:18081 for the example.
import * as http from 'node:http';
http
  .createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const body = `orders-api: ${req.method} ${req.url}\n`;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  })
  .listen(18081, '127.0.0.1', () => console.log('orders API on 127.0.0.1:18081'));
