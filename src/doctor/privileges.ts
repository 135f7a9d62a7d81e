// The doctor's privileges checks (being written).

import type { Check } from './check.js';

export const privilegesChecks: Array<{ name: string; check: Check }> = [];
