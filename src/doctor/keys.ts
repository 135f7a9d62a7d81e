// The doctor's keys checks (being written).

import type { Check } from './check.js';

export const keysChecks: Array<{ name: string; check: Check }> = [];
