// Damaged copies of an envelope, with the SQLSTATE docs/format.md says each must raise
// when only the envelope's own key version is loaded.

export interface Mutation {
  label: string;
  bytes: Buffer;
  sqlstate: 'PS002' | 'PS003' | 'PS004';
}

export function bitFlips(envelope: Buffer): Mutation[] {
  const out: Mutation[] = [];
  for (let i = 0; i < envelope.length; i++) {
    for (let bit = 0; bit < 8; bit++) {
      const bytes = Buffer.from(envelope);
      bytes[i]! ^= 1 << bit;
      let sqlstate: Mutation['sqlstate'] = 'PS003';
      if (i < 2 || (i === 2 && bit === 7)) sqlstate = 'PS004';
      else if (i < 6) sqlstate = 'PS002';
      out.push({ label: `byte ${i} bit ${bit}`, bytes, sqlstate });
    }
  }
  return out;
}

export function truncations(envelope: Buffer): Mutation[] {
  const out: Mutation[] = [];
  for (let n = 0; n < envelope.length; n++) {
    out.push({ label: `first ${n} bytes`, bytes: envelope.subarray(0, n), sqlstate: n < 70 ? 'PS004' : 'PS003' });
  }
  return out;
}
