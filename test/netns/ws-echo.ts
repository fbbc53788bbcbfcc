// What the echo mode of test/netns/ws-client.ts prints when a WebSocket to
// test/netns/ws-app.ts works end to end: 1,000 messages echoed in order, a
// 1 MiB binary frame back as sent, ping/pong, permessage-deflate negotiated
// through whatever lies between (both proxies), the server's close code
// (it closes on "close-me") and the client's own.
export const WS_ECHO_RESULT = {
  echoed: 1000,
  inOrder: true,
  binary: true,
  extensions: 'permessage-deflate',
  pong: 'ping from the client',
  serverClose: [4002, 'server says bye'],
  clientClose: 4001,
} as const;
