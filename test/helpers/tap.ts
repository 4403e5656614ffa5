import type tap from 'tap';

/** The `t` a `t.test()` callback receives (tap exports no name for it); the root `t` is one too. */
export type TestT = Parameters<Parameters<typeof tap.test>[0]>[0];
