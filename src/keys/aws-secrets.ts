// The local master key kept in AWS Secrets Manager: read once per process (GetSecretValue)
// and then held like PGSEAL_MASTER_KEY, by a LocalMasterKey. The secret's value is the
// base64 key `pgseal keys generate-master-key` prints (SecretString), or its 32 bytes
// (SecretBinary). While any provider made from one secret is open the key is shared; when
// the last closes it is zeroed, and a later provider reads the secret again.

import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { WrapContext } from '../crypto/derive.js';
import { ErrorCodes, PgsealError } from '../errors.js';
import { awsCall, callTimeoutMs, clientConfig, type AwsClientOptions } from './aws.js';
import { LocalMasterKey, parseMasterKey, type DataKey, type MasterKeyOptions, type MasterKeyProvider, type ScopeKeyProvider } from './master-key.js';

export interface AwsSecretOptions extends AwsClientOptions, MasterKeyOptions {
  /** the secret's name or ARN */
  secretId: string;
  /** a client of your own; otherwise one is made from the options and the SDK's defaults */
  client?: SecretsManagerClient | undefined;
}

interface Held {
  pending: Promise<Buffer>;
  users: number;
}
/** the key of each secret read by this process (by secret, region and endpoint), while a provider made from it is open */
const held = new Map<string, Held>();

export class AwsSecretMasterKey implements MasterKeyProvider {
  readonly #options: AwsSecretOptions;
  readonly #secretId: string;
  #local: LocalMasterKey | undefined;
  #preparing: Promise<void> | undefined;
  #entry: Held | undefined;
  #shareKey: string | undefined;
  #closed = false;

  constructor(options: AwsSecretOptions) {
    const secretId = options.secretId?.trim();
    if (!secretId) {
      throw new PgsealError(ErrorCodes.MASTER_KEY_MISSING, 'no master key secret: PGSEAL_MASTER_KEY_SECRET_ID is empty', { hint: 'set it to the name or ARN of the Secrets Manager secret holding the base64 master key' });
    }
    this.#options = options;
    this.#secretId = secretId;
  }

  /** `local:<id>` of the key in the secret, once prepared. */
  get ref(): string {
    return this.#local?.ref ?? `secret:${this.#secretId}`;
  }

  get scopeKeys(): ScopeKeyProvider | undefined {
    return this.#local?.scopeKeys;
  }

  prepare(): Promise<void> {
    if (this.#closed) return Promise.reject(new PgsealError(ErrorCodes.KEY_UNWRAP_FAILED, 'the master key was closed', { hint: 'create a new provider (awsSecretMasterKey) after close()' }));
    this.#preparing ??= this.#load().catch((error: unknown) => {
      this.#preparing = undefined;
      throw error;
    });
    return this.#preparing;
  }

  async #load(): Promise<void> {
    // shared only between providers that read the same secret the same way: a client or
    // credentials of the caller's own may reach another account, so those never share
    const shareKey = this.#options.client || this.#options.credentials ? undefined
      : JSON.stringify([this.#secretId, this.#options.region ?? process.env.AWS_REGION ?? '', this.#options.endpoint ?? process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER ?? process.env.AWS_ENDPOINT_URL ?? '']);
    let entry = shareKey === undefined ? undefined : held.get(shareKey);
    if (!entry) {
      const made: Held = { pending: readSecret(this.#options, this.#secretId), users: 0 };
      made.pending.catch(() => {
        if (shareKey !== undefined && held.get(shareKey) === made) held.delete(shareKey);
      });
      if (shareKey !== undefined) held.set(shareKey, made);
      entry = made;
    }
    this.#shareKey = shareKey;
    entry.users += 1;
    let key: Buffer;
    try {
      key = await entry.pending;
    } catch (error) {
      entry.users -= 1;
      throw error;
    }
    if (this.#closed) {
      release(shareKey, entry);
      return;
    }
    this.#entry = entry;
    this.#local = new LocalMasterKey(Buffer.from(key), this.#options);
  }

  async #ready(): Promise<LocalMasterKey> {
    await this.prepare();
    if (!this.#local) throw new PgsealError(ErrorCodes.KEY_UNWRAP_FAILED, 'the master key was closed', { hint: 'create a new provider (awsSecretMasterKey) after close()' });
    return this.#local;
  }

  async generateDataKey(context: WrapContext): Promise<DataKey> {
    return (await this.#ready()).generateDataKey(context);
  }

  async wrap(plaintext: Buffer, context: WrapContext): Promise<Buffer> {
    return (await this.#ready()).wrap(plaintext, context);
  }

  async unwrap(wrapped: Buffer, context: WrapContext): Promise<Buffer> {
    return (await this.#ready()).unwrap(wrapped, context);
  }

  close(): void {
    this.#closed = true;
    this.#local?.close();
    if (this.#entry) release(this.#shareKey, this.#entry);
    this.#entry = undefined;
  }
}

function release(shareKey: string | undefined, entry: Held): void {
  entry.users -= 1;
  if (entry.users > 0) return;
  void entry.pending.then((key) => key.fill(0), () => undefined);
  if (shareKey !== undefined && held.get(shareKey) === entry) held.delete(shareKey);
}

async function readSecret(options: AwsSecretOptions, secretId: string): Promise<Buffer> {
  const client = options.client ?? new SecretsManagerClient(clientConfig(options));
  try {
    const out = await awsCall(
      { service: 'AWS Secrets Manager', operation: 'GetSecretValue', resource: secretId, setting: 'PGSEAL_MASTER_KEY_SECRET_ID' },
      callTimeoutMs(options),
      (abortSignal) => client.send(new GetSecretValueCommand({ SecretId: secretId }), { abortSignal }),
    );
    const source = `the secret ${secretId}`;
    if (out.SecretBinary && out.SecretBinary.length > 0) {
      const bytes = Buffer.from(out.SecretBinary);
      out.SecretBinary.fill(0);
      if (bytes.length === 32) return bytes;
      const text = bytes.toString('utf8');
      bytes.fill(0);
      return parseMasterKey(text, source);
    }
    if (out.SecretString !== undefined) return parseMasterKey(out.SecretString, source);
    throw new PgsealError(ErrorCodes.MASTER_KEY_MISSING, `${source} has no value`, { hint: 'put the base64 master key in it (`pgseal keys generate-master-key` makes one)' });
  } finally {
    if (!options.client) client.destroy();
  }
}

/** The master key held in a Secrets Manager secret. */
export function awsSecretMasterKey(options: AwsSecretOptions): AwsSecretMasterKey {
  return new AwsSecretMasterKey(options);
}
