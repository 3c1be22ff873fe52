/**
 * Budgets of the policy (docs/policy.md "Budgets"): an optional `budgets.yaml` beside policy.csv,
 * reviewed and versioned with it, loaded into the same snapshot (the version hash covers it) and
 * checked by `airlock policy check`. A budget caps what a role may do on a host — requests per minute,
 * request-body bytes per hour — on top of what the rules allow; it never allows anything.
 *
 * ```yaml
 * version: 1
 * budgets:
 *   - name: forum-writes          # named in the 429 body and the audit trail
 *     role: analyst               # the session's own role, or "*" for every role
 *     host: forum.example.com     # a policy host (name or name:port), or "*" for every host
 *     methods: [POST, PUT]        # optional; default: every method
 *     per: session                # session (default) or role: whose calls share one counter
 *     requestsPerMinute: 30
 *     bytesOutPerHour: 10485760
 * ```
 *
 * This module only parses and validates; the gateway keeps the counters (src/gateway/budgets.ts).
 */
import { z } from 'zod';
import { PolicyError } from '../errors.js';
import { dottedPath } from '../validation.js';
import { parsePolicyYaml } from './yaml-file.js';

/** The optional budgets file of a policy directory. */
export const BUDGETS_FILE = 'budgets.yaml';

const budgetSchema = z
  .strictObject({
    name: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'expected a name of letters, digits, "_", "." or "-"'),
    role: z.string().min(1),
    host: z
      .string()
      .regex(/^(\*|[a-z0-9.-]+(:\d{1,5})?)$/, 'expected "*" or a lowercase policy host (name or name:port)'),
    methods: z
      .array(z.string().regex(/^[A-Z]+$/, 'expected an uppercase method such as POST'))
      .min(1)
      .optional(),
    per: z.enum(['session', 'role']).default('session'),
    requestsPerMinute: z.number().int().positive().optional(),
    bytesOutPerHour: z.number().int().positive().optional(),
  })
  .refine((b) => b.requestsPerMinute !== undefined || b.bytesOutPerHour !== undefined, {
    message: 'a budget needs requestsPerMinute, bytesOutPerHour or both',
  });

const fileSchema = z
  .strictObject({
    version: z.literal(1),
    budgets: z.array(budgetSchema),
  })
  .superRefine((f, ctx) => {
    const seen = new Set<string>();
    f.budgets.forEach((b, i) => {
      if (seen.has(b.name))
        ctx.addIssue({
          code: 'custom',
          message: `duplicate budget name "${b.name}"`,
          path: ['budgets', i, 'name'],
        });
      seen.add(b.name);
    });
  });

/** One budget, validated. */
export type Budget = Readonly<z.output<typeof budgetSchema>>;

/** The budgets of one policy snapshot, indexed by role for the request path. */
export class BudgetSet {
  readonly budgets: readonly Budget[];
  readonly #byRole: Map<string, Budget[]>;
  readonly #anyRole: readonly Budget[];

  constructor(budgets: readonly Budget[]) {
    this.budgets = Object.freeze([...budgets]);
    this.#byRole = new Map();
    const any: Budget[] = [];
    for (const b of budgets) {
      if (b.role === '*') any.push(b);
      else {
        const list = this.#byRole.get(b.role) ?? [];
        list.push(b);
        this.#byRole.set(b.role, list);
      }
    }
    this.#anyRole = any;
  }

  get size(): number {
    return this.budgets.length;
  }

  /** The budgets a call of `role` to `host` (policy host) with `method` counts against, in file order. */
  matching(role: string, host: string, method: string): Budget[] {
    const out: Budget[] = [];
    const own = this.#byRole.get(role);
    const consider = (b: Budget): void => {
      if (b.host !== '*' && b.host !== host) return;
      if (b.methods && !b.methods.includes(method)) return;
      out.push(b);
    };
    if (own) for (const b of own) consider(b);
    for (const b of this.#anyRole) consider(b);
    return out;
  }
}

/** A policy without budgets.yaml. */
export const NO_BUDGETS = new BudgetSet([]);

/**
 * Parses and validates budgets.yaml.
 * @param roles the roles the policy defines: a budget naming another role (not `*`) is an error.
 * @throws PolicyError located at `budgets.yaml:LINE`, naming the field (`budgets.2.requestsPerMinute`).
 */
export function parseBudgets(text: string, roles?: ReadonlySet<string>): BudgetSet {
  const file = parsePolicyYaml(text, BUDGETS_FILE, fileSchema, '"version: 1" and a "budgets" list');
  const budgets = file.data.budgets;
  if (roles) {
    budgets.forEach((b, i) => {
      if (b.role !== '*' && !roles.has(b.role)) {
        throw new PolicyError(
          `${dottedPath(['budgets', i, 'role'])}: role "${b.role}" is not defined by policy.csv`,
          file.at(['budgets', i, 'role']),
        );
      }
    });
  }
  return new BudgetSet(budgets);
}
