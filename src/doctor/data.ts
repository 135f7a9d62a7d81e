// The doctor's data checks (being written).

import type { Check } from './check.js';

export const dataChecks: Array<{ name: string; check: Check }> = [];
