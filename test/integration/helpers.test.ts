// The typed helpers in client mode (the default): test/support/helpers-suite.ts.

import { helpersSuite } from '../support/helpers-suite.js';

helpersSuite('client');
