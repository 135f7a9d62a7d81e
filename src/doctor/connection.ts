// The doctor's connection checks (being written).

import type { Check } from './check.js';

export const connectionChecks: Array<{ name: string; check: Check }> = [];
