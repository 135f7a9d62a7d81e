// Normalisers, byte for byte what pgseal.normalize does in SQL (sql/60_search.sql): case
// folding is ASCII-only and trimming removes space, tab, CR and LF, so both sides agree
// whatever the database's collation.

import type { Normalizer } from './model.js';
import { ErrorCodes, PgsealError } from '../errors.js';

export const NORMALIZERS: readonly Normalizer[] = ['none', 'trim', 'email', 'phone', 'upper'];

const trim = (v: string) => v.replace(/^[ \t\n\r]+|[ \t\n\r]+$/g, '');
const asciiLower = (v: string) => v.replace(/[A-Z]/g, (c) => c.toLowerCase());
const asciiUpper = (v: string) => v.replace(/[a-z]/g, (c) => c.toUpperCase());

export function normalize(value: string, normalizer: Normalizer): string {
  switch (normalizer) {
    case 'none':
      return value;
    case 'trim':
      return trim(value);
    case 'email':
      return asciiLower(trim(value));
    case 'upper':
      return asciiUpper(trim(value));
    case 'phone': {
      const digits = value.replace(/[^0-9]/g, '');
      if (trim(value).startsWith('+')) return '+' + digits;
      if (digits.startsWith('00')) return '+' + digits.slice(2);
      return digits;
    }
    default:
      throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `unknown normalizer ${JSON.stringify(normalizer)}`, {
        hint: `use one of ${NORMALIZERS.join(', ')}`,
      });
  }
}
