// A client inside a test namespace: connects to HOST PORT, prints the JSON
// line the listener answered with, or {"error": ...}; exits non-zero on error.
// Usage: node --import tsx test/netns/connect.ts HOST PORT
import { connect } from 'node:net';

const [host = '', port = '0'] = process.argv.slice(2);
const socket = connect({ host, port: Number(port), timeout: 3000 });
let data = '';
socket.setEncoding('utf8');
socket.on('data', (chunk: string) => (data += chunk));
socket.on('end', () => {
  process.stdout.write(data.trim() + '\n');
  process.exit(0);
});
socket.on('timeout', () => {
  console.log(JSON.stringify({ error: `timeout connecting to ${host}:${port}` }));
  process.exit(1);
});
socket.on('error', (e) => {
  console.log(JSON.stringify({ error: e.message }));
  process.exit(1);
});
