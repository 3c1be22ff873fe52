// An agent loop whose tools run in an Airlock sandbox (TypeScript SDK). The model is scripted here so
// the example runs anywhere (test/e2e/sdk.test.ts runs it); put your LLM call in `nextAction`: it gets
// the transcript and answers with a tool call or a final answer. Whatever the model asks for, the only
// network exit of the tools is the egress gateway: a call the role may not make comes back as a 403
// with `egress_denied`, which the loop hands back to the model as a tool result, not as a crash.
//
//   AIRLOCK_API_URL=http://127.0.0.1:8080 AIRLOCK_API_TOKEN=$(cat .airlock/api-token) node examples/agent-loop.mjs
import { Sandbox } from 'airlock';

/** Tools the model may call; each runs inside the sandbox. */
const tools = {
  /** GET a URL; returns status and body. */
  http_get: (sandbox, { url }) => curl(sandbox, ['-s', '-w', '\n%{http_code}', url]),
  /** POST a JSON body to a URL; returns status and body. */
  http_post: (sandbox, { url, body }) =>
    curl(sandbox, [
      '-s',
      '-w',
      '\n%{http_code}',
      '-X',
      'POST',
      '-H',
      'content-type: application/json',
      '-d',
      JSON.stringify(body),
      url,
    ]),
};

async function curl(sandbox, args) {
  const out = await sandbox.exec(['curl', ...args], { timeoutSeconds: 30 });
  const i = out.stdout.lastIndexOf('\n');
  return { status: Number(out.stdout.slice(i + 1)), body: out.stdout.slice(0, i) };
}

/** The scripted model: read a post, then (wrongly) try to answer it publicly. */
function nextAction(transcript) {
  const script = [
    { tool: 'http_get', args: { url: 'http://forum.test:3000/posts/1' } },
    {
      tool: 'http_post',
      args: {
        url: 'http://forum.test:3000/comments',
        body: { postId: 1, body: 'Just open it to everyone.' },
      },
    },
  ];
  const step = transcript.filter((m) => m.role === 'tool').length;
  return script[step] ?? { final: 'done: read the post; posting was refused by policy' };
}

await using sandbox = await Sandbox.create({
  role: 'analyst',
  ttlSeconds: 300,
  labels: { agent: 'example' },
});
const transcript = [{ role: 'user', content: 'Analyze forum post 1.' }];
for (let turn = 0; turn < 10; turn++) {
  const action = nextAction(transcript);
  if (action.final) {
    console.log('final', action.final);
    break;
  }
  const result = await tools[action.tool](sandbox, action.args);
  const error = result.status === 403 ? ` ${JSON.parse(result.body).error}` : '';
  console.log(`tool ${action.tool} ${action.args.url} -> ${result.status}${error}`);
  transcript.push({ role: 'tool', name: action.tool, content: JSON.stringify(result) });
}
// What the gateway decided for this agent (the audit trail of the session, as recorded so far).
const counts = { allow: 0, deny: 0 };
for await (const event of sandbox.decisions({ pollMs: 100 })) {
  counts[event.decision]++;
  if (counts.allow + counts.deny === transcript.length - 1) break;
}
console.log(`decisions: ${counts.allow} allowed, ${counts.deny} denied`);
