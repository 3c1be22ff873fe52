/**
 * Exact-match search for known secret values (docs/credentials.md "Leak stop"): the encoded forms of
 * every value the gateway holds are computed once per value version, and a request's URL and header
 * values are searched for any of them in one pass.
 *
 * Forms: the value itself, URL-encoded (`encodeURIComponent`), base64 (standard and URL-safe, at each
 * of the three byte alignments a value can have inside a longer base64 text — only the characters
 * that depend on the value's bytes alone are kept), and hex (lower and upper case); the URL-encoded
 * forms of those as well. Values shorter than {@link MIN_SECRET_BYTES} are not searched (too many
 * false positives; docs/credentials.md).
 *
 * The search is a q-gram filter (as in Navarro & Raffinot, "Flexible Pattern Matching in Strings",
 * 2002, ch. 6 "q-gram" filters): every form is at least `minLen` characters long, so sampling the
 * 4-character gram at every `minLen - 3`rd position of the text is certain to sample a gram lying
 * inside any occurrence; each sampled gram is looked up in one Map of the forms' grams, and only a
 * hit is verified with `startsWith`. Cost: text length / stride lookups, whatever the number of
 * values (bench/credentials.mjs).
 */

/** Values shorter than this (bytes) are not searched for. */
export const MIN_SECRET_BYTES = 8;

const Q = 4;

/** The base64 characters that depend only on `value`'s bytes when it starts at byte offset `k`. */
function alignedBase64(value: Buffer, k: number, urlSafe: boolean): string {
  const padded = Buffer.concat([Buffer.alloc(k), value]);
  const text = padded.toString(urlSafe ? 'base64url' : 'base64');
  const startBit = 8 * k;
  const endBit = 8 * (k + value.length);
  const first = Math.ceil(startBit / 6);
  const last = Math.floor(endBit / 6); // exclusive
  return text.slice(first, last);
}

/** Every form of `value` searched for (deduplicated). */
export function encodedForms(value: string): string[] {
  const bytes = Buffer.from(value, 'utf8');
  const forms = new Set<string>([value, encodeURIComponent(value)]);
  for (const urlSafe of [false, true]) {
    for (let k = 0; k < 3; k++) {
      const b = alignedBase64(bytes, k, urlSafe);
      forms.add(b);
      forms.add(encodeURIComponent(b));
    }
  }
  const hex = bytes.toString('hex');
  forms.add(hex);
  forms.add(hex.toUpperCase());
  // Header values and bodies are searched as Latin-1 text (one character per byte): a non-ASCII
  // value appears there as its UTF-8 bytes.
  const latin1 = bytes.toString('latin1');
  if (latin1 !== value) forms.add(latin1);
  return [...forms];
}

function gramAt(s: string, i: number): number {
  return (
    (((s.charCodeAt(i) & 0xff) << 24) |
      ((s.charCodeAt(i + 1) & 0xff) << 16) |
      ((s.charCodeAt(i + 2) & 0xff) << 8) |
      (s.charCodeAt(i + 3) & 0xff)) >>>
    0
  );
}

interface Entry {
  readonly form: string;
  /** Where the gram sits in the form. */
  readonly offset: number;
  readonly id: string;
}

/** A set of secret values, searchable in texts. Immutable; build a new one when a value changes. */
export class SecretScanner {
  readonly #grams = new Map<number, Entry[]>();
  readonly #stride: number;
  /** Number of forms searched for (for diagnostics). */
  readonly forms: number;

  /**
   * @param values id (e.g. the credential name) → value, as a map or as pairs (an id may repeat);
   *   values under {@link MIN_SECRET_BYTES} are skipped.
   */
  constructor(values: Iterable<readonly [string, string]>) {
    const all: { form: string; id: string }[] = [];
    for (const [id, value] of values) {
      if (Buffer.byteLength(value) < MIN_SECRET_BYTES) continue;
      for (const form of encodedForms(value)) if (form.length >= Q) all.push({ form, id });
    }
    this.forms = all.length;
    const minLen = all.reduce((m, f) => Math.min(m, f.form.length), Infinity);
    this.#stride = Number.isFinite(minLen) ? minLen - Q + 1 : 1;
    for (const { form, id } of all) {
      for (let o = 0; o + Q <= form.length; o++) {
        const g = gramAt(form, o);
        const list = this.#grams.get(g);
        const e = { form, offset: o, id };
        if (list) list.push(e);
        else this.#grams.set(g, [e]);
      }
    }
  }

  get empty(): boolean {
    return this.forms === 0;
  }

  /** The id of a value found in `text` (in any of its forms), or null. */
  find(text: string): string | null {
    if (this.forms === 0) return null;
    const stride = this.#stride;
    const end = text.length - Q;
    for (let p = 0; p <= end; p += stride) {
      const list = this.#grams.get(gramAt(text, p));
      if (list === undefined) continue;
      for (const e of list) {
        const at = p - e.offset;
        if (at >= 0 && text.startsWith(e.form, at)) return e.id;
      }
    }
    return null;
  }
}

/** A scanner that finds nothing. */
export const EMPTY_SCANNER = new SecretScanner(new Map());
