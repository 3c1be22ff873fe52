/**
 * One way for tests to get at a thrown error: `err(() => parse(x), ConfigError)` returns the error
 * (typed) after asserting its class; with an async function it returns a promise of it.
 */
import { expect } from 'vitest';

/** A class of errors (`ConfigError`, `PolicyError`, ...). */
type ErrorClass<E> = abstract new (...args: never[]) => E;

/**
 * Calls `fn` and returns what it threw (or the promise it returned rejected with), after asserting it
 * is an instance of `type`.
 * @throws Error `expected TYPE, nothing was thrown` when `fn` returns (or its promise resolves);
 *   vitest's assertion error when something of another class was thrown.
 */
export function err<E>(fn: () => Promise<unknown>, type: ErrorClass<E>): Promise<E>;
export function err<E>(fn: () => unknown, type: ErrorClass<E>): E;
export function err<E>(fn: () => unknown, type: ErrorClass<E>): E | Promise<E> {
  const check = (thrown: unknown): E => {
    expect(thrown).toBeInstanceOf(type);
    return thrown as E;
  };
  const nothing = (): never => {
    throw new Error(`expected ${type.name}, nothing was thrown`);
  };
  let out: unknown;
  try {
    out = fn();
  } catch (thrown) {
    return check(thrown);
  }
  if (out instanceof Promise) return out.then(nothing, check);
  return nothing();
}
