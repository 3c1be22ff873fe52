-- wrk script for the saturation runs. The URL given to wrk names where TCP goes (nginx, Airlock or
-- squid); this script sets what is asked for:
--   BENCH_TARGET  request target: "/payload" (direct) or "http://upstream.test:PORT/payload" (proxy,
--                 absolute form, RFC 9112 3.2.2)
--   BENCH_HOST    Host header ("upstream.test:PORT")
--   BENCH_AUTH    Proxy-Authorization value (Airlock's session credential), or empty
-- done() prints one JSON line after the marker "BENCH_JSON " for bench/run.mjs to read.
wrk.method = "GET"
wrk.path = os.getenv("BENCH_TARGET") or "/"
wrk.headers["Host"] = os.getenv("BENCH_HOST")
local auth = os.getenv("BENCH_AUTH")
if auth ~= nil and auth ~= "" then
  wrk.headers["Proxy-Authorization"] = auth
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"durationUs":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latencyUs":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
