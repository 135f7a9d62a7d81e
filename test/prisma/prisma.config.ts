// prisma generate's configuration for the test schema (test/support/prisma-generate.ts runs it).
import { defineConfig } from 'prisma/config';

export default defineConfig({
  schema: 'schema.prisma',
});
