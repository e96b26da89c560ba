/**
 * Per-queue specialisation of the hot loops.
 *
 * TurboFan (V8) treats a closure's `const` captures as constants — typed-array maps, lengths and
 * base pointers known at compile time, their checks gone from every loop iteration — but only
 * while its function literal has produced exactly one closure. A fast loop written as a closure
 * over one queue's views therefore runs ~25 % fewer instructions per chain (callgrind,
 * `scripts/ir-per-function.sh`) in a process with one queue, and loses it all (and more) as soon
 * as a second queue creates a second closure.
 *
 * {@link specialize} keeps that gain for every queue: it compiles the factory's own source text
 * once more per call (`new Function`, made unique so V8's compilation cache does not share it), so
 * each queue's loop is the only closure of its literal. The code is the same compiled function the
 * type checker saw; only numeric module constants, listed by the caller and written in as `const`
 * literals, are added. Where code generation from strings is disallowed
 * (`--disallow-code-generation-from-strings`, a CSP), it falls back to calling the factory itself:
 * the same behaviour, without the gain, said once on `virtiokit:queue`. The same fallback is taken
 * when a self-test finds that compiled text no longer stands on its own (a minifier renamed the
 * module constants that callers pass by name, or a transpiler wrapped functions in helpers of its
 * own), and when instantiating a copy meets a name it lacks.
 */
import { logger } from '../log.js';

const log = logger('queue');

let serial = 0;
let disabled = false;
let warned = false;
let selfTested = false;

const PROBE_CONSTANT = 40;
/** The self-test's factory: refers to a module constant by name, as the queue factories do. */
function probeFactory(x: number): () => number {
  return () => x + PROBE_CONSTANT;
}

/**
 * Whether a specialised copy behaves like its source here: false where a minifier renamed module
 * constants (the copy's text then names a constant the caller passed under its original name).
 * Where code generation from strings is disallowed it finds that out (and records it, see
 * {@link specializationActive}) while answering with the unspecialised function.
 */
export function specializationSelfTest(): boolean {
  try {
    return compileCopy(probeFactory, { PROBE_CONSTANT }, [2])() === 42;
  } catch {
    return false;
  }
}

/** Numeric constants a factory's body refers to by name (written into the copy as `const`). */
export type SpecializeConstants = Readonly<Record<string, number>>;

/** False once code generation from strings was found disallowed (every queue then runs the shared, unspecialised loops). */
export function specializationActive(): boolean {
  return !disabled;
}

/**
 * A fresh instance of `factory` (a plain function, a static method or an arrow function whose
 * only free identifiers are globals and the names in `constants`), called with `args`. Factories
 * declare no named functions inside: a transpiler that keeps names (esbuild's `keepNames`, used by
 * tsx) wraps them in a helper of its own that a copy does not have — instantiation then falls back.
 * @param factory returns the hot function, capturing what it needs as `const`s
 * @param constants module constants the factory uses, by name (finite numbers only)
 * @param args the factory's arguments (e.g. the queue)
 */
export function specialize<A extends unknown[], R>(factory: (...a: A) => R, constants: SpecializeConstants, ...args: A): R {
  if (!selfTested) {
    selfTested = true;
    if (!disabled && !specializationSelfTest()) {
      disabled = true;
      log('a compiled function\'s text does not use the names it was written with (a minifier?): queue fast loops run unspecialised');
    }
  }
  if (disabled) return factory(...args);
  return compileCopy(factory, constants, args);
}

/** Compile and call one copy of `factory` (no fallback decisions but EvalError). */
function compileCopy<A extends unknown[], R>(factory: (...a: A) => R, constants: SpecializeConstants, args: A): R {
  let src = factory.toString();
  // A method's text ("name(q) { … }") is not an expression; as a function expression it is.
  if (!/^(function\b|async\b|\()/.test(src) && !/^[A-Za-z_$][\w$]*\s*=>/.test(src)) src = `function ${src}`;
  let decl = '';
  for (const [name, value] of Object.entries(constants)) {
    if (!/^[A-Za-z_$][\w$]*$/.test(name) || typeof value !== 'number' || !Number.isFinite(value)) {
      throw new TypeError(`specialize: constant ${name} must be an identifier with a finite number value`);
    }
    decl += `const ${name} = ${String(value)};\n`;
  }
  let made: (...a: A) => R;
  try {
    // The serial makes the source unique: V8 caches compiled `new Function` bodies by source.
    made = new Function(`'use strict';\n/* virtiokit queue specialisation #${++serial} */\n${decl}return (${src});`)() as (...a: A) => R;
  } catch (e) {
    if (!(e instanceof EvalError)) throw e;
    disabled = true;
    if (!warned) {
      warned = true;
      log('code generation from strings is disallowed (%s): queue fast loops run unspecialised', e.message);
    }
    return factory(...args);
  }
  try {
    return made(...args);
  } catch (e) {
    // The copy's text refers to something only its module had (a transpiler's helper): run the
    // factory itself, as for a failed self-test.
    if (!(e instanceof ReferenceError)) throw e;
    disabled = true;
    log('a specialised copy could not be instantiated (%s): queue fast loops run unspecialised', e.message);
    return factory(...args);
  }
}
