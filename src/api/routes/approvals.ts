import type { Express, Request, Response } from 'express';
import type { z } from 'zod';
import { ForbiddenError, RequestValidationError } from '../../errors.js';
import { authorizeApi, delegationOf } from '../../policy/delegation.js';
import type { Approval, ApprovalStatus } from '../../sessions/approvals.js';
import { firstIssue } from '../../validation.js';
import type { ApiContext } from '../context.js';
import { authorizeSessionOp, readableBy } from '../delegation.js';
import { methodNotAllowed, requireAuth } from '../middleware.js';
import { approvalIdParam, approveBody, denyBody, grantBody, sessionIdParam } from '../schemas.js';
import { jsonBody, parseBody } from '../validate.js';

const STATUSES: readonly ApprovalStatus[] = ['pending', 'approved', 'denied', 'expired', 'cancelled', 'used'];
/** Comment line sent on an idle approvals stream, ms. */
const KEEPALIVE_MS = 15_000;
/** A stream whose client reads slower than this much buffered output is closed, bytes. */
const MAX_BUFFERED_BYTES = 1024 * 1024;

function callerOf(res: Response): string {
  return res.locals.caller as string;
}

/** A validated path or query parameter. @throws RequestValidationError naming `field`. */
function param(schema: z.ZodString, value: unknown, field: string): string {
  const r = schema.safeParse(value);
  if (!r.success)
    throw new RequestValidationError(`${field}: ${firstIssue(r.error)?.message ?? 'invalid'}`, field);
  return r.data;
}

/**
 * Whether `caller` may see an approval: it may READ sessions of the role, or APPROVE them (while
 * delegation is off, everyone may).
 */
function visibleTo(ctx: ApiContext, caller: string): (a: Approval) => boolean {
  const readable = readableBy(ctx.policy, caller);
  const policy = ctx.policy.current();
  return (a) =>
    readable(a.role) ||
    (policy !== null &&
      delegationOf(policy).enabled &&
      authorizeApi(policy, caller, 'APPROVE', a.role).allowed);
}

/**
 * Checks that `caller` may decide approval `a`: APPROVE on `/approvals/ROLE`, and — separation of
 * duties — also APPROVE_OWN when the caller created the approval's session (docs/approvals.md).
 * Both only while delegation is on (the policy has `airlock.api` rules).
 * @throws ForbiddenError naming the missing operation; GatewayUnavailableError without a policy.
 */
function authorizeDecision(ctx: ApiContext, caller: string, a: Approval): void {
  authorizeSessionOp(ctx.policy, caller, 'APPROVE', a.role);
  const policy = ctx.policy.current();
  if (policy && delegationOf(policy).enabled && a.sessionCreator === caller) {
    if (!authorizeApi(policy, caller, 'APPROVE_OWN', a.role).allowed) {
      throw new ForbiddenError(
        `caller "${caller}" created session ${a.sessionId} and may not approve its own session's requests ` +
          `(separation of duties): that needs a rule granting APPROVE_OWN on airlock.api /approvals/${a.role}`,
      );
    }
  }
}

/**
 * Registers `/v1/approvals` (list, get, approve, deny, stream) and `POST /v1/sessions/{id}/grants`
 * (docs/approvals.md, docs/api.md). Every route needs a bearer token; deciding needs APPROVE (and
 * APPROVE_OWN for one's own sessions), granting needs GRANT, once the policy has management rules.
 */
export function registerApprovalRoutes(app: Express, ctx: ApiContext): void {
  const approvals = ctx.approvals;
  const auth = requireAuth(ctx);
  const readJson = jsonBody();
  if (approvals) {
    app
      .route('/v1/approvals')
      .get(auth, (req, res) => {
        const status = req.query.status;
        if (
          status !== undefined &&
          (typeof status !== 'string' || !STATUSES.includes(status as ApprovalStatus))
        ) {
          throw new RequestValidationError(`status: expected one of ${STATUSES.join(', ')}`, 'status');
        }
        const sessionId =
          req.query.sessionId === undefined
            ? undefined
            : param(sessionIdParam, req.query.sessionId, 'sessionId');
        const visible = visibleTo(ctx, callerOf(res));
        const list = approvals
          .list({
            ...(status ? { status: status as ApprovalStatus } : {}),
            ...(sessionId ? { sessionId } : {}),
          })
          .filter(visible);
        res.json({ approvals: list });
      })
      .all(methodNotAllowed(['GET']));

    app
      .route('/v1/approvals/stream')
      .get(auth, (req: Request, res: Response) => {
        const visible = visibleTo(ctx, callerOf(res));
        res.status(200);
        res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
        res.setHeader('Cache-Control', 'no-store');
        res.setHeader('X-Accel-Buffering', 'no');
        res.flushHeaders();
        let closed = false;
        const write = (text: string): void => {
          if (closed) return;
          res.write(text);
          if (res.writableLength > MAX_BUFFERED_BYTES) close();
        };
        // Those pending now first, then every change as it happens.
        for (const a of approvals.list({ status: 'pending' }).filter(visible).reverse())
          write(`event: requested\ndata: ${JSON.stringify(a)}\n\n`);
        const unsubscribe = approvals.subscribe((c) => {
          if (visible(c.approval)) write(`event: ${c.type}\ndata: ${JSON.stringify(c.approval)}\n\n`);
        });
        const keepalive = setInterval(() => write(': keepalive\n\n'), KEEPALIVE_MS);
        keepalive.unref();
        function close(): void {
          if (closed) return;
          closed = true;
          unsubscribe();
          clearInterval(keepalive);
          res.end();
        }
        req.on('close', close);
      })
      .all(methodNotAllowed(['GET']));

    app
      .route('/v1/approvals/:approvalId')
      .get(auth, (req, res) => {
        const a = approvals.get(param(approvalIdParam, req.params.approvalId, 'approvalId'));
        if (!visibleTo(ctx, callerOf(res))(a)) authorizeSessionOp(ctx.policy, callerOf(res), 'READ', a.role);
        res.json(a);
      })
      .all(methodNotAllowed(['GET']));

    app
      .route('/v1/approvals/:approvalId/approve')
      .post(auth, readJson, (req, res) => {
        const id = param(approvalIdParam, req.params.approvalId, 'approvalId');
        const body = parseBody(approveBody, req.body);
        authorizeDecision(ctx, callerOf(res), approvals.get(id));
        res.json(
          approvals.approve(id, callerOf(res), {
            reason: body.reason,
            ...(body.uses !== undefined ? { uses: body.uses } : {}),
            ...(body.ttlSeconds !== undefined ? { ttlSeconds: body.ttlSeconds } : {}),
          }),
        );
      })
      .all(methodNotAllowed(['POST']));

    app
      .route('/v1/approvals/:approvalId/deny')
      .post(auth, readJson, (req, res) => {
        const id = param(approvalIdParam, req.params.approvalId, 'approvalId');
        const body = parseBody(denyBody, req.body);
        authorizeDecision(ctx, callerOf(res), approvals.get(id));
        res.json(approvals.deny(id, callerOf(res), body.reason));
      })
      .all(methodNotAllowed(['POST']));
  }

  const grants = ctx.grants;
  if (grants) {
    app
      .route('/v1/sessions/:id/grants')
      .post(auth, readJson, async (req, res) => {
        const id = param(sessionIdParam, req.params.id, 'id');
        const body = parseBody(grantBody, req.body);
        authorizeSessionOp(ctx.policy, callerOf(res), 'GRANT', ctx.sessions.get(id).role);
        const view = await grants.grant(id, callerOf(res), {
          ...body.rule,
          ttlSeconds: body.ttlSeconds,
          reason: body.reason,
        });
        res.status(201).json(view);
      })
      .all(methodNotAllowed(['POST']));
  }
}
