// The progress bar's ETA comes from the run's own rate, never cli-progress's buffer (which
// printed "NFs" on the second frame, before it had two samples).

import { describe, expect, it } from 'vitest';
import { etaText } from '../../src/cli/progress.js';

describe('progress ETA', () => {
  it('is "--" until there is a rate, then minutes and seconds', () => {
    expect(etaText(null)).toBe('--');
    expect(etaText(Infinity)).toBe('--');
    expect(etaText(Number.NaN)).toBe('--');
    expect(etaText(0)).toBe('0s');
    expect(etaText(42.4)).toBe('42s');
    expect(etaText(75)).toBe('1m15s');
    expect(etaText(3 * 3600 + 7 * 60 + 5)).toBe('3h07m');
  });
});
