/**
 * The Airlock web console (docs/console.md): Preact, bundled by esbuild into dist/console/app.js by
 * `npm run build` (scripts/build-console.mjs) and served by `airlock serve` at /ui/. Everything it
 * shows comes from the API with the token typed into the login form (sessionStorage, this tab only).
 * Text from the audit (hosts, paths, rules) is rendered as text nodes only, never as HTML.
 */
import { render } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { ApiError, call, readEvents, tokenStore } from './api.js';
import type {
  Approval,
  ApprovalEvent,
  Decision,
  PolicyStatus,
  SessionSummary,
  StreamEvent,
} from './types.js';

/** Decisions kept in memory for the chart and the denial groups. */
const MAX_DECISIONS = 20_000;
/** Seconds the chart shows. */
const CHART_SECONDS = 300;
/** Rows of one session's decision stream shown (most recent first). */
const MAX_ROWS = 500;

/** The current time, re-rendered every second. */
function useNow(): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
  return now;
}

function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

const clock = (iso: string): string => new Date(iso).toISOString().slice(11, 23);

type Conn = 'connecting' | 'live' | 'retrying';

/**
 * Follows an event stream of the API (`url`): reconnects after 2 s when the stream breaks, calls
 * `onAuthFail` on 401, stops on 403/404, and reports refusals through `error` (with `status`).
 */
function useEventStream<E extends { event: string } = StreamEvent>(
  token: string,
  url: string,
  onEvent: (e: E) => void,
  onAuthFail: () => void,
): { conn: Conn; error: string | null; status: number | null; ended: boolean } {
  const [conn, setConn] = useState<Conn>('connecting');
  const [error, setError] = useState<string | null>(null);
  const [status, setStatus] = useState<number | null>(null);
  const [ended, setEnded] = useState(false);
  const handler = useRef(onEvent);
  handler.current = onEvent;
  useEffect(() => {
    const ctl = new AbortController();
    let stop = false;
    void (async () => {
      while (!stop) {
        let done = false;
        try {
          setConn('connecting');
          await readEvents<E>(token, url, ctl.signal, (e) => {
            setConn('live');
            setError(null);
            if (e.event === 'end') done = true;
            handler.current(e);
          });
        } catch (err) {
          if (stop) return;
          if (err instanceof ApiError && err.status === 401) return onAuthFail();
          if (err instanceof ApiError) setStatus(err.status);
          if (err instanceof ApiError && (err.status === 403 || err.status === 404)) {
            setError(err.message);
            return;
          }
          setError((err as Error).message);
        }
        if (done) {
          setEnded(true);
          return;
        }
        setConn('retrying');
        await new Promise((r) => setTimeout(r, 2000));
      }
    })();
    return () => {
      stop = true;
      ctl.abort();
    };
  }, [token, url]);
  return { conn, error, status, ended };
}

function Login({ onLogin }: { onLogin: (t: string) => void }) {
  const [value, setValue] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (ev: Event): Promise<void> => {
    ev.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await call(value.trim(), 'GET', '/v1/policy');
      tokenStore.set(value.trim());
      onLogin(value.trim());
    } catch (err) {
      setError(
        err instanceof ApiError && err.status === 401 ? 'That token is not valid.' : (err as Error).message,
      );
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login">
      <form onSubmit={(e) => void submit(e)} aria-label="Log in">
        <h1>Airlock console</h1>
        <p>Log in with an API token (the one in .airlock/api-token, or one of api.tokens).</p>
        <label>
          API token
          <input
            id="token"
            type="password"
            autocomplete="off"
            value={value}
            onInput={(e) => setValue((e.target as HTMLInputElement).value)}
            required
          />
        </label>
        <button type="submit" disabled={busy || value.trim() === ''}>
          Log in
        </button>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <p class="hint">The token stays in this tab only (sessionStorage) and is never put in a URL.</p>
      </form>
    </main>
  );
}

/** Decisions per second over the last {@link CHART_SECONDS} s, allow above deny, as an SVG. */
function RateChart({ decisions, now }: { decisions: readonly Decision[]; now: number }) {
  const end = Math.floor(now / 1000);
  const start = end - CHART_SECONDS + 1;
  const allow = new Array<number>(CHART_SECONDS).fill(0);
  const deny = new Array<number>(CHART_SECONDS).fill(0);
  for (let i = decisions.length - 1; i >= 0; i--) {
    const d = decisions[i]!;
    const s = Math.floor(Date.parse(d.time) / 1000);
    if (s < start) break;
    if (s > end) continue;
    (d.decision === 'allow' ? allow : deny)[s - start]!++; // would_deny counts as denied by the rules
  }
  let max = 1;
  for (let i = 0; i < CHART_SECONDS; i++) max = Math.max(max, allow[i]! + deny[i]!);
  const H = 100;
  const lastAllow = allow[CHART_SECONDS - 1]! + allow[CHART_SECONDS - 2]!;
  const lastDeny = deny[CHART_SECONDS - 1]! + deny[CHART_SECONDS - 2]!;
  return (
    <section class="card chart">
      <h2>Decisions per second, last {CHART_SECONDS / 60} minutes</h2>
      <p class="legend">
        <span class="key allow">allow</span> <span class="key deny">deny</span> peak {max}/s · now{' '}
        {(lastAllow / 2).toFixed(1)} allowed/s, {(lastDeny / 2).toFixed(1)} denied/s
      </p>
      <svg
        viewBox={`0 0 ${CHART_SECONDS} ${H}`}
        preserveAspectRatio="none"
        role="img"
        aria-label="decisions per second"
      >
        {allow.map((a, i) => {
          const d = deny[i]!;
          if (a + d === 0) return null;
          const ha = (a / max) * H;
          const hd = (d / max) * H;
          return (
            <g key={i}>
              {d > 0 && <rect class="deny" x={i} width={1} y={H - hd} height={hd} />}
              {a > 0 && <rect class="allow" x={i} width={1} y={H - hd - ha} height={ha} />}
            </g>
          );
        })}
      </svg>
    </section>
  );
}

function PolicyCard({ policy }: { policy: PolicyStatus | null }) {
  if (!policy) return <section class="card">Policy: waiting…</section>;
  return (
    <section class="card policy" data-testid="policy">
      <h2>Policy</h2>
      <dl>
        <dt>Version</dt>
        <dd class="mono">{policy.version ?? 'none loaded: every call is denied'}</dd>
        <dt>Loaded</dt>
        <dd>{policy.loadedAt ?? '—'}</dd>
        <dt>Rules</dt>
        <dd>{policy.rules ?? '—'}</dd>
        <dt>Reload</dt>
        <dd class={policy.lastError ? 'bad' : 'good'}>
          {policy.lastError ? 'last reload failed; the previous policy stays in force' : 'ok'}
        </dd>
        {policy.lastError && (
          <>
            <dt>Last error</dt>
            <dd class="mono error">{policy.lastError}</dd>
          </>
        )}
      </dl>
    </section>
  );
}

function SessionsTable({
  sessions,
  now,
  onOpen,
}: {
  sessions: readonly SessionSummary[];
  now: number;
  onOpen: (id: string) => void;
}) {
  return (
    <section class="card sessions">
      <h2>Sessions ({sessions.length})</h2>
      {sessions.length === 0 ? (
        <p class="empty">No sessions.</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th>Session</th>
              <th>Role</th>
              <th>Creator</th>
              <th>Status</th>
              <th>Age</th>
              <th>TTL left</th>
              <th class="num">Allowed</th>
              <th class="num">Denied</th>
            </tr>
          </thead>
          <tbody>
            {sessions.map((s) => (
              <tr key={s.id} data-session={s.id}>
                <td>
                  <button class="link mono" onClick={() => onOpen(s.id)}>
                    {s.id}
                  </button>
                </td>
                <td>{s.role}</td>
                <td>{s.createdBy}</td>
                <td>{s.status}</td>
                <td>{duration(now - Date.parse(s.createdAt))}</td>
                <td>{duration(Date.parse(s.expiresAt) - now)}</td>
                <td class="num allow-text">{s.allowed}</td>
                <td class={s.denied > 0 ? 'num deny-text' : 'num'}>{s.denied}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** Denials of every session grouped by role, host and path; groups changed in the last 5 s stand out. */
function Denials({ decisions, now }: { decisions: readonly Decision[]; now: number }) {
  const groups = useMemo(() => {
    const m = new Map<
      string,
      { role: string; host: string; path: string; count: number; last: number; methods: Set<string> }
    >();
    for (const d of decisions) {
      if (d.decision === 'allow') continue; // deny, and would_deny (complain mode)
      const host = `${d.host}:${d.port}`;
      const key = `${d.role ?? '(unknown)'}\u0000${host}\u0000${d.path}`;
      let g = m.get(key);
      if (!g) {
        g = { role: d.role ?? '(unknown)', host, path: d.path, count: 0, last: 0, methods: new Set() };
        m.set(key, g);
      }
      g.count++;
      g.last = Math.max(g.last, Date.parse(d.time));
      g.methods.add(d.method);
    }
    return [...m.values()].sort((a, b) => b.last - a.last);
  }, [decisions]);
  return (
    <section class="card denials">
      <h2>Denials, all sessions (last {CHART_SECONDS / 60} minutes and live)</h2>
      {groups.length === 0 ? (
        <p class="empty">No denials.</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th>Role</th>
              <th>Host</th>
              <th>Path</th>
              <th>Methods</th>
              <th class="num">Count</th>
              <th>Last</th>
            </tr>
          </thead>
          <tbody>
            {groups.slice(0, 200).map((g) => (
              <tr key={`${g.role} ${g.host} ${g.path}`} class={now - g.last < 5000 ? 'fresh' : ''}>
                <td>{g.role}</td>
                <td class="mono">{g.host}</td>
                <td class="mono path">{g.path}</td>
                <td>{[...g.methods].join(', ')}</td>
                <td class="num deny-text">{g.count}</td>
                <td>{duration(now - g.last)} ago</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function SessionView({
  token,
  id,
  onBack,
  onAuthFail,
}: {
  token: string;
  id: string;
  onBack: () => void;
  onAuthFail: () => void;
}) {
  const now = useNow();
  const [session, setSession] = useState<SessionSummary | null>(null);
  const [rows, setRows] = useState<Decision[]>([]);
  const [decisionFilter, setDecisionFilter] = useState<'all' | 'allow' | 'deny'>('all');
  const [hostFilter, setHostFilter] = useState('');
  const [confirming, setConfirming] = useState(false);
  const [killError, setKillError] = useState<string | null>(null);
  const [killing, setKilling] = useState(false);
  const { conn, error, ended } = useEventStream(
    token,
    `/v1/events?sessionId=${encodeURIComponent(id)}`,
    (e) => {
      if (e.event === 'decision') setRows((r) => [e.data, ...r].slice(0, MAX_ROWS));
      else if (e.event === 'sessions') setSession(e.data.sessions[0] ?? null);
    },
    onAuthFail,
  );
  const kill = async (): Promise<void> => {
    setKilling(true);
    setKillError(null);
    try {
      await call(token, 'DELETE', `/v1/sessions/${encodeURIComponent(id)}`);
      setConfirming(false);
    } catch (err) {
      setKillError((err as Error).message);
    } finally {
      setKilling(false);
    }
  };
  const shown = rows.filter(
    (r) =>
      (decisionFilter === 'all' || r.decision === decisionFilter) &&
      (hostFilter === '' || r.host.toLowerCase().includes(hostFilter.toLowerCase())),
  );
  const gone = ended || session?.status === 'stopped';
  return (
    <main class="session-view">
      <p>
        <button class="link" onClick={onBack}>
          ← all sessions
        </button>
      </p>
      <section class="card">
        <h2>
          Session <span class="mono">{id}</span>{' '}
          <span class={`status ${gone ? 'ended' : conn}`} data-testid="session-state">
            {gone ? 'ended' : conn === 'live' ? 'live' : conn}
          </span>
        </h2>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        {session && (
          <dl class="inline">
            <dt>Role</dt>
            <dd>{session.role}</dd>
            <dt>Creator</dt>
            <dd>{session.createdBy}</dd>
            <dt>Status</dt>
            <dd>{session.status}</dd>
            <dt>Age</dt>
            <dd>{duration(now - Date.parse(session.createdAt))}</dd>
            <dt>TTL left</dt>
            <dd>{duration(Date.parse(session.expiresAt) - now)}</dd>
            <dt>Allowed</dt>
            <dd class="allow-text">{session.allowed}</dd>
            <dt>Denied</dt>
            <dd class="deny-text">{session.denied}</dd>
          </dl>
        )}
        {!gone && !confirming && (
          <button class="danger" onClick={() => setConfirming(true)}>
            Kill session
          </button>
        )}
        {!gone && confirming && (
          <div class="confirm" role="alertdialog" aria-label="Confirm kill">
            <p>
              Kill session <span class="mono">{id}</span>? The gateway refuses its calls at once and the
              sandbox is removed. This cannot be undone.
            </p>
            <button class="danger" disabled={killing} onClick={() => void kill()}>
              Yes, kill it
            </button>{' '}
            <button onClick={() => setConfirming(false)}>Cancel</button>
          </div>
        )}
        {killError && (
          <p class="error" role="alert">
            {killError}
          </p>
        )}
      </section>
      <section class="card">
        <h2>Decisions (live)</h2>
        <div class="filters">
          <label>
            Decision{' '}
            <select
              value={decisionFilter}
              onChange={(e) =>
                setDecisionFilter((e.target as HTMLSelectElement).value as 'all' | 'allow' | 'deny')
              }
            >
              <option value="all">all</option>
              <option value="allow">allow</option>
              <option value="deny">deny</option>
            </select>
          </label>
          <label>
            Host{' '}
            <input
              type="search"
              placeholder="filter by host"
              value={hostFilter}
              onInput={(e) => setHostFilter((e.target as HTMLInputElement).value)}
            />
          </label>
          <span class="muted">
            {shown.length} of {rows.length}
          </span>
        </div>
        <table class="decisions">
          <thead>
            <tr>
              <th>Time (UTC)</th>
              <th>Method</th>
              <th>Host</th>
              <th>Path</th>
              <th>Decision</th>
              <th>Rule</th>
              <th class="num">Latency</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((r, i) => (
              <tr key={`${r.time}-${i}`} class={r.decision}>
                <td class="mono">{clock(r.time)}</td>
                <td>{r.method}</td>
                <td class="mono">
                  {r.host}:{r.port}
                </td>
                <td class="mono path">{r.path}</td>
                <td class={`${r.decision}-text`}>
                  {r.decision} <span class="muted">({r.reason})</span>
                </td>
                <td class="mono rule">{r.rule ?? '(no rule matched)'}</td>
                <td class="num">{r.durationMs.toFixed(1)} ms</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
    </main>
  );
}

/**
 * Pending approvals (docs/approvals.md) from `GET /v1/approvals/stream`, with the request and its
 * body and approve/deny buttons; nothing is shown when the API serves no approvals (404).
 */
function Approvals({ token, now, onAuthFail }: { token: string; now: number; onAuthFail: () => void }) {
  const [items, setItems] = useState<ReadonlyMap<string, Approval>>(new Map());
  const [reasons, setReasons] = useState<Record<string, string>>({});
  const [errors, setErrors] = useState<Record<string, string>>({});
  const { status } = useEventStream<ApprovalEvent>(
    token,
    '/v1/approvals/stream',
    (e) => setItems((m) => new Map(m).set(e.data.id, e.data)),
    onAuthFail,
  );
  if (status === 404) return null;
  const pending = [...items.values()]
    .filter((a) => a.status === 'pending' && Date.parse(a.pendingUntil) > now)
    .sort((a, b) => b.requestedAt.localeCompare(a.requestedAt));
  const decide = async (a: Approval, verdict: 'approve' | 'deny'): Promise<void> => {
    const reason = (reasons[a.id] ?? '').trim();
    if (!reason) {
      setErrors((e) => ({ ...e, [a.id]: 'A reason is required.' }));
      return;
    }
    try {
      const next = (await call(token, 'POST', `/v1/approvals/${encodeURIComponent(a.id)}/${verdict}`, {
        reason,
      })) as Approval;
      setItems((m) => new Map(m).set(next.id, next));
      setErrors((e) => ({ ...e, [a.id]: '' }));
    } catch (err) {
      setErrors((e) => ({ ...e, [a.id]: (err as Error).message }));
    }
  };
  return (
    <section class="card approvals" data-testid="approvals">
      <h2>Pending approvals ({pending.length})</h2>
      {pending.length === 0 ? (
        <p class="empty">Nothing waits for a decision.</p>
      ) : (
        pending.map((a) => (
          <div class="approval" key={a.id} data-approval={a.id}>
            <p>
              <strong>{a.method}</strong> <span class="mono path">{a.url}</span>
            </p>
            <p class="muted">
              session <span class="mono">{a.sessionId}</span> · role {a.role} · created by {a.sessionCreator}{' '}
              · expires in {duration(Date.parse(a.pendingUntil) - now)}
            </p>
            <p class="mono rule">{a.rule}</p>
            <pre class="body">
              {a.bodyText ?? `(binary body, ${a.bodyBytes} bytes, ${a.contentType || 'no content type'})`}
            </pre>
            <p class="muted mono">
              body sha256 {a.bodySha256} · {a.bodyBytes} bytes
            </p>
            <label>
              Reason{' '}
              <input
                type="text"
                value={reasons[a.id] ?? ''}
                onInput={(e) => setReasons((r) => ({ ...r, [a.id]: (e.target as HTMLInputElement).value }))}
              />
            </label>{' '}
            <button class="approve" onClick={() => void decide(a, 'approve')}>
              Approve
            </button>{' '}
            <button class="danger" onClick={() => void decide(a, 'deny')}>
              Deny
            </button>
            {errors[a.id] && (
              <p class="error" role="alert">
                {errors[a.id]}
              </p>
            )}
          </div>
        ))
      )}
    </section>
  );
}

function Dashboard({ token, onLogout }: { token: string; onLogout: () => void }) {
  const now = useNow();
  const [sessions, setSessions] = useState<SessionSummary[]>([]);
  const [policy, setPolicy] = useState<PolicyStatus | null>(null);
  const [decisions, setDecisions] = useState<Decision[]>([]);
  const [caller, setCaller] = useState<string | null>(null);
  const [open, setOpen] = useState<string | null>(null);
  const pending = useRef<Decision[]>([]);
  // Decisions arrive in bursts: apply them at most 4 times a second.
  useEffect(() => {
    const t = setInterval(() => {
      if (pending.current.length === 0) return;
      const add = pending.current;
      pending.current = [];
      setDecisions((d) => {
        const next = d.concat(add);
        return next.length > MAX_DECISIONS ? next.slice(next.length - MAX_DECISIONS) : next;
      });
    }, 250);
    return () => clearInterval(t);
  }, []);
  const { conn, error } = useEventStream(
    token,
    '/v1/events',
    (e) => {
      if (e.event === 'hello') setCaller(e.data.caller);
      else if (e.event === 'sessions') setSessions(e.data.sessions);
      else if (e.event === 'policy') setPolicy(e.data);
      else if (e.event === 'decision') pending.current.push(e.data);
    },
    onLogout,
  );
  return (
    <>
      <header>
        <h1>Airlock</h1>
        <span class={`status ${conn}`} data-testid="connection">
          {conn}
        </span>
        <span class="muted">
          policy <span class="mono">{policy?.version?.slice(0, 12) ?? '—'}</span>{' '}
          {policy?.lastError ? <span class="bad">reload failed</span> : <span class="good">ok</span>}
        </span>
        <span class="spacer" />
        {caller && <span class="muted">signed in as {caller}</span>}
        <button onClick={onLogout}>Log out</button>
      </header>
      {error && (
        <p class="error banner" role="alert">
          {error}
        </p>
      )}
      {open ? (
        <SessionView token={token} id={open} onBack={() => setOpen(null)} onAuthFail={onLogout} />
      ) : (
        <main class="overview">
          <RateChart decisions={decisions} now={now} />
          <Approvals token={token} now={now} onAuthFail={onLogout} />
          <SessionsTable sessions={sessions} now={now} onOpen={setOpen} />
          <Denials decisions={decisions} now={now} />
          <PolicyCard policy={policy} />
        </main>
      )}
    </>
  );
}

function App() {
  const [token, setToken] = useState<string | null>(tokenStore.get());
  const logout = (): void => {
    tokenStore.clear();
    setToken(null);
  };
  return token ? <Dashboard token={token} onLogout={logout} /> : <Login onLogin={setToken} />;
}

render(<App />, document.getElementById('root')!);
