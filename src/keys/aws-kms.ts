// A master key in AWS KMS: data keys come from GenerateDataKey (or are wrapped with
// Encrypt), unwrapping is Decrypt, each call with the encryption context of its row and
// database (crypto/derive.ts kmsEncryptionContext). The key never leaves KMS; kek_ref is
// `kms:<key ARN>`. KMS traffic is bounded here: an unwrapped key is reused for a TTL and a
// number of uses, and concurrent requests for one wrapped key share a single Decrypt.

import { createHash, randomBytes } from 'node:crypto';
import { DecryptCommand, DescribeKeyCommand, EncryptCommand, GenerateDataKeyCommand, KMSClient, ReEncryptCommand } from '@aws-sdk/client-kms';
import { kmsEncryptionContext, type WrapContext } from '../crypto/derive.js';
import { ErrorCodes, PgsealError } from '../errors.js';
import { kmsCacheUse, kmsCall, kmsMetricsReady } from '../metrics.js';
import { awsCall, callTimeoutMs, clientConfig, type AwsCallSite, type AwsClientOptions } from './aws.js';
import type { DataKey, MasterKeyProvider } from './master-key.js';

export interface AwsKmsOptions extends AwsClientOptions {
  /** the KMS key: key id, key ARN, alias (alias/...) or alias ARN */
  keyId: string;
  /** a client of your own (its region, credentials, endpoint); otherwise one is made from the options and the SDK's defaults */
  client?: KMSClient | undefined;
  /** how long an unwrapped key is reused before KMS is asked again (default 5 minutes, the keyring's TTL) */
  cacheTtlMs?: number | undefined;
  /** how many unwraps one Decrypt may serve before KMS is asked again (default 10,000) */
  cacheMaxUses?: number | undefined;
}

interface CacheEntry {
  /** settles once; the key it gives is copied out to each caller, never handed out itself */
  pending: Promise<Buffer>;
  key?: Buffer;
  expiresAt: number;
  uses: number;
}

const KEY_BYTES = 32;
const KEY_ARN = /^arn:aws[a-z-]*:kms:[^:]+:\d+:key\/.+$/;

export class AwsKmsMasterKey implements MasterKeyProvider {
  readonly #client: KMSClient;
  readonly #ownsClient: boolean;
  readonly #keyId: string;
  readonly #timeoutMs: number;
  readonly #ttlMs: number;
  readonly #maxUses: number;
  #arn: string | undefined;
  #preparing: Promise<void> | undefined;
  #cache = new Map<string, CacheEntry>();
  #closed = false;

  constructor(options: AwsKmsOptions) {
    const keyId = options.keyId?.trim();
    if (!keyId) {
      throw new PgsealError(ErrorCodes.MASTER_KEY_MISSING, 'no KMS key: PGSEAL_KMS_KEY_ID is empty', { hint: 'set it to the key id, key ARN or alias (alias/...) of the KMS key that wraps pgseal\'s keys' });
    }
    this.#keyId = keyId;
    this.#client = options.client ?? new KMSClient(clientConfig(options));
    this.#ownsClient = !options.client;
    this.#timeoutMs = callTimeoutMs(options);
    this.#ttlMs = options.cacheTtlMs ?? 5 * 60_000;
    this.#maxUses = options.cacheMaxUses ?? 10_000;
    if (KEY_ARN.test(keyId)) this.#arn = keyId;
    kmsMetricsReady();
  }

  /** `kms:<key ARN>` once prepared (or once any call answered); before, the key as configured. */
  get ref(): string {
    return `kms:${this.#arn ?? this.#keyId}`;
  }

  /**
   * DescribeKey, once per provider: the key's ARN (an alias or a bare id resolved), and a key
   * that is disabled or pending deletion refused here, before anything is written. Where
   * DescribeKey is not allowed and the key is named by its ARN, KMS's own refusals on use
   * remain.
   */
  prepare(): Promise<void> {
    this.#live();
    this.#preparing ??= this.#call('DescribeKey', async (abortSignal) => {
      const out = await this.#client.send(new DescribeKeyCommand({ KeyId: this.#keyId }), { abortSignal });
      const meta = out.KeyMetadata;
      if (!meta?.Arn) throw new PgsealError(ErrorCodes.AWS_REQUEST_FAILED, `AWS KMS DescribeKey on ${this.#keyId} gave no ARN`, { hint: 'check the endpoint is AWS KMS' });
      if (meta.KeyState && meta.KeyState !== 'Enabled') {
        throw new PgsealError(ErrorCodes.KMS_KEY_DISABLED, `the KMS key ${meta.Arn} is ${meta.KeyState}: it cannot wrap or unwrap pgseal's keys`, {
          hint: meta.KeyState === 'PendingDeletion' ? 'cancel its deletion (aws kms cancel-key-deletion) and enable it (aws kms enable-key), then run again; nothing was written' : 'enable it (aws kms enable-key), then run again; nothing was written',
        });
      }
      this.#arn = meta.Arn;
    }).catch((error: unknown) => {
      if (error instanceof PgsealError && error.code === ErrorCodes.AWS_ACCESS_DENIED && KEY_ARN.test(this.#keyId)) return;
      this.#preparing = undefined;
      throw error;
    });
    return this.#preparing;
  }

  async generateDataKey(context: WrapContext): Promise<DataKey> {
    await this.prepare();
    const out = await this.#call('GenerateDataKey', (abortSignal) =>
      this.#client.send(new GenerateDataKeyCommand({ KeyId: this.#arn, KeySpec: 'AES_256', EncryptionContext: kmsEncryptionContext(context) }), { abortSignal }));
    const plaintext = takeKey(out.Plaintext);
    if (!out.CiphertextBlob) {
      plaintext.fill(0);
      throw new PgsealError(ErrorCodes.AWS_REQUEST_FAILED, 'AWS KMS GenerateDataKey gave no ciphertext', { hint: 'check the endpoint is AWS KMS' });
    }
    return { plaintext, wrapped: Buffer.from(out.CiphertextBlob) };
  }

  async wrap(plaintext: Buffer, context: WrapContext): Promise<Buffer> {
    await this.prepare();
    // the SDK keeps no copy of the request after it settles; the caller zeroes plaintext
    const out = await this.#call('Encrypt', (abortSignal) =>
      this.#client.send(new EncryptCommand({ KeyId: this.#arn, Plaintext: plaintext, EncryptionContext: kmsEncryptionContext(context) }), { abortSignal }));
    if (!out.CiphertextBlob) throw new PgsealError(ErrorCodes.AWS_REQUEST_FAILED, 'AWS KMS Encrypt gave no ciphertext', { hint: 'check the endpoint is AWS KMS' });
    return Buffer.from(out.CiphertextBlob);
  }

  /** Decrypt, cached: the result is a fresh copy the caller zeroes. */
  async unwrap(wrapped: Buffer, context: WrapContext): Promise<Buffer> {
    await this.prepare();
    const id = cacheId(wrapped, context);
    for (let attempt = 0; ; attempt++) {
      const now = Date.now();
      let entry = this.#cache.get(id);
      // only a settled entry ages out: callers joining a pending Decrypt share it
      if (entry?.key && (entry.expiresAt <= now || entry.uses >= this.#maxUses)) {
        this.#forget(id, entry);
        entry = undefined;
      }
      kmsCacheUse(!entry);
      if (!entry) entry = this.#remember(id, this.#decrypt(wrapped, context), now);
      entry.uses += 1;
      const key = await entry.pending;
      // zeroed between its arrival and this copy (expired, closed): ask once more, then give up
      if (!key.every((b) => b === 0)) return Buffer.from(key);
      if (attempt > 0) throw new PgsealError(ErrorCodes.KEY_UNWRAP_FAILED, 'an unwrapped key was zeroed before it could be used', { hint: 'the provider was closed, or its cache TTL is shorter than a KMS call: raise cacheTtlMs' });
    }
  }

  /** A Decrypt in the cache: kept until its TTL, then zeroed by a timer of its own (a key nobody asks for again must not linger). */
  #remember(id: string, pending: Promise<Buffer>, now: number): CacheEntry {
    const made: CacheEntry = { pending, expiresAt: now + this.#ttlMs, uses: 0 };
    pending.then((key) => {
      if (this.#cache.get(id) === made && !this.#closed) {
        made.key = key;
        const timer = setTimeout(() => this.#forget(id, made), Math.max(made.expiresAt - Date.now(), 0));
        timer.unref();
      } else {
        key.fill(0);
      }
    }, () => {
      if (this.#cache.get(id) === made) this.#cache.delete(id);
    });
    this.#cache.set(id, made);
    return made;
  }

  async #decrypt(wrapped: Buffer, context: WrapContext): Promise<Buffer> {
    const out = await this.#call('Decrypt', (abortSignal) =>
      this.#client.send(new DecryptCommand({ KeyId: this.#arn, CiphertextBlob: wrapped, EncryptionContext: kmsEncryptionContext(context) }), { abortSignal }));
    return takeKey(out.Plaintext);
  }

  /** keys rewrap from one KMS key to another: ReEncrypt, so the data key never leaves KMS. Another provider: undefined (unwrap and wrap). */
  async rewrapFrom(from: MasterKeyProvider, wrapped: Buffer, context: WrapContext): Promise<Buffer | undefined> {
    if (!(from instanceof AwsKmsMasterKey)) return undefined;
    await Promise.all([this.prepare(), from.prepare()]);
    const encryptionContext = kmsEncryptionContext(context);
    const out = await this.#call('ReEncrypt', (abortSignal) =>
      this.#client.send(new ReEncryptCommand({
        CiphertextBlob: wrapped, SourceKeyId: from.#arn, SourceEncryptionContext: encryptionContext,
        DestinationKeyId: this.#arn, DestinationEncryptionContext: encryptionContext,
      }), { abortSignal }));
    if (!out.CiphertextBlob) throw new PgsealError(ErrorCodes.AWS_REQUEST_FAILED, 'AWS KMS ReEncrypt gave no ciphertext', { hint: 'check the endpoint is AWS KMS' });
    return Buffer.from(out.CiphertextBlob);
  }

  close(): void {
    this.#closed = true;
    for (const [id, entry] of this.#cache) this.#forget(id, entry);
    if (this.#ownsClient) this.#client.destroy();
  }

  #forget(id: string, entry: CacheEntry): void {
    entry.key?.fill(0);
    if (this.#cache.get(id) === entry) this.#cache.delete(id);
  }

  #live(): void {
    if (this.#closed) throw new PgsealError(ErrorCodes.KEY_UNWRAP_FAILED, 'the KMS master key provider was closed', { hint: 'create a new provider (awsKmsMasterKey) after close()' });
  }

  /** One KMS call under its deadline (aws.ts awsCall), counted and timed (metrics.ts). */
  #call<T>(operation: string, call: (abortSignal: AbortSignal) => Promise<T>): Promise<T> {
    return kmsCall(operation, () => awsCall(this.#site(operation), this.#timeoutMs, call));
  }

  #site(operation: string): AwsCallSite {
    return { service: 'AWS KMS', operation, resource: this.#arn ?? this.#keyId, setting: 'PGSEAL_KMS_KEY_ID (--kms-key-id)' };
  }
}

/** A KMS key as the master key. */
export function awsKmsMasterKey(options: AwsKmsOptions): AwsKmsMasterKey {
  return new AwsKmsMasterKey(options);
}

/** The plaintext KMS returned, as a Buffer of our own; the SDK's array is zeroed. */
function takeKey(bytes: Uint8Array | undefined): Buffer {
  if (!bytes || bytes.length !== KEY_BYTES) {
    bytes?.fill(0);
    throw new PgsealError(ErrorCodes.KEY_UNWRAP_FAILED, `AWS KMS returned ${bytes ? bytes.length : 'no'} key bytes, not ${KEY_BYTES}`, { hint: 'the KMS key must be a symmetric key (SYMMETRIC_DEFAULT)' });
  }
  const key = Buffer.from(bytes);
  bytes.fill(0);
  return key;
}

// the cache is keyed by a hash of what was asked, salted per process: the map holds no wrapped key
const CACHE_SALT = randomBytes(16);
function cacheId(wrapped: Buffer, context: WrapContext): string {
  return createHash('sha256').update(CACHE_SALT).update(wrapped).update(JSON.stringify(kmsEncryptionContext(context))).digest('base64');
}
