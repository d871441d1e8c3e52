/**
 * Tests run TypeScript through ts-jest in transpile-only mode (tsconfig isolatedModules: no type
 * check per file, which is slow on two cores); `npm test` type-checks the whole tree first with tsc.
 */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { diagnostics: false }] },
  testTimeout: 120000,
  // Two workers, not jest's default of cores - 1 (which runs a 2-core machine in band): while one
  // suite builds or runs native code, another's JavaScript keeps the second core busy.
  maxWorkers: 2,
};
