// The doctor's logging checks (being written).

import type { Check } from './check.js';

export const loggingChecks: Array<{ name: string; check: Check }> = [];
