// A real KMS-compatible server for the AWS tests and the KMS bench: moto_server (moto 5, Python) on a free
// loopback port, with a small HTTP proxy in front that counts every call it forwards (KMS
// traffic "counted at the server") and, when a test asks, answers some calls with an AWS
// error instead (throttling, access denied) the way AWS does: same status, same JSON body.
// Where moto_server is not installed, `startMoto()` says why and the tests are skipped.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Fault {
  /** the operation to answer with an error: 'Decrypt', 'GetSecretValue' ... */
  operation: string;
  /** the AWS error name, as in the JSON body's __type */
  error: string;
  status: number;
  /** how many calls to fail (default: every one) */
  times?: number;
}

export interface Moto {
  /** the proxy's URL: point the SDK here (endpoint, AWS_ENDPOINT_URL_KMS) */
  endpoint: string;
  /** moto itself, behind the proxy: for set-up calls that should not be counted */
  direct: string;
  /** calls per operation since the last reset ('Decrypt' → 3) */
  counts: Map<string, number>;
  count(operation: string): number;
  reset(): void;
  fail(fault: Fault): void;
  clearFaults(): void;
  /**
   * Holds every request this long before forwarding it, concurrently: a network's latency, for
   * the bench (a KMS call from a machine in the key's region takes milliseconds of network,
   * and KMS answers calls in parallel, which moto on loopback does not).
   */
  setDelay(ms: number): void;
  /** the environment a CLI child needs to reach it */
  env: Record<string, string>;
  stop(): Promise<void>;
}

/** Whether moto_server is on PATH; the reason in one line if not. */
export function motoAvailable(): true | { reason: string } {
  const probe = spawnSync('sh', ['-c', 'command -v moto_server'], { encoding: 'utf8' });
  if (probe.status === 0 && probe.stdout.trim() !== '') return true;
  return { reason: 'moto_server (moto 5, `pip install "moto[server]"`) is not on PATH, so there is no KMS-compatible server to test against' };
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

async function waitFor(url: string, child: ChildProcess, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`moto_server exited with ${child.exitCode}`);
    try {
      const res = await fetch(url);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`moto_server did not answer on ${url} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function operationOf(req: IncomingMessage): string {
  const target = String(req.headers['x-amz-target'] ?? '');
  return target.includes('.') ? target.slice(target.lastIndexOf('.') + 1) : target || `${req.method} ${req.url}`;
}

export async function startMoto(): Promise<Moto> {
  const port = await freePort();
  const child = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
  const direct = `http://127.0.0.1:${port}`;
  await waitFor(`${direct}/moto-api/`, child, 20_000);

  const counts = new Map<string, number>();
  let faults: Array<Fault & { left: number }> = [];
  let delayMs = 0;
  const proxy: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const op = operationOf(req);
      counts.set(op, (counts.get(op) ?? 0) + 1);
      const fault = faults.find((f) => f.operation === op && f.left > 0);
      if (fault) {
        fault.left -= 1;
        res.writeHead(fault.status, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': 'fault', 'x-amzn-errortype': fault.error });
        res.end(JSON.stringify({ __type: fault.error, message: `${fault.error} (injected by the test proxy)` }));
        return;
      }
      const body = Buffer.concat(chunks);
      const forward = () => {
        const upstream = request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: { ...req.headers, host: `127.0.0.1:${port}` } }, (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        });
        upstream.on('error', () => {
          res.writeHead(502);
          res.end();
        });
        upstream.end(body);
      };
      if (delayMs > 0) setTimeout(forward, delayMs);
      else forward();
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;

  return {
    endpoint,
    direct,
    counts,
    count: (operation) => counts.get(operation) ?? 0,
    reset: () => counts.clear(),
    fail: (fault) => {
      faults.push({ ...fault, left: fault.times ?? Infinity });
    },
    clearFaults: () => {
      faults = [];
    },
    setDelay: (ms) => {
      delayMs = ms;
    },
    env: {
      AWS_ACCESS_KEY_ID: 'testing',
      AWS_SECRET_ACCESS_KEY: 'testing',
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL_KMS: endpoint,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: endpoint,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    },
    stop: async () => {
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
      child.kill('SIGTERM');
    },
  };
}
