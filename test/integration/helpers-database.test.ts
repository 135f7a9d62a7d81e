// The typed helpers in database mode: test/support/helpers-suite.ts.

import { helpersSuite } from '../support/helpers-suite.js';

helpersSuite('database');
