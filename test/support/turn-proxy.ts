// A loopback TCP proxy that counts round trips: each time the client speaks after the
// server has spoken is one more turn. Counts messages exchanged, not time.

import { createServer, connect, type Server, type Socket } from 'node:net';

export interface TurnProxy {
  port: number;
  turns(): number;
  reset(): void;
  close(): Promise<void>;
}

export async function startTurnProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TurnProxy> {
  let turns = 0;
  let lastFromServer = true;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, targetHost);
    sockets.add(client).add(upstream);
    client.on('data', (chunk) => {
      if (lastFromServer) turns++;
      lastFromServer = false;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      lastFromServer = true;
      client.write(chunk);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : 0,
    turns: () => turns,
    reset: () => {
      turns = 0;
      lastFromServer = true;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
