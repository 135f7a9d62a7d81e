// The doctor's logs checks (being written).

import type { Check } from './check.js';

export const logsChecks: Array<{ name: string; check: Check }> = [];
