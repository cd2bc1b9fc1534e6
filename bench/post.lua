-- wrk script: POST the body in $PAYLOAD to the URL, with $API_KEY as X-API-Key when set;
-- with METHOD=GET (and no PAYLOAD) a bodiless GET instead (the bare HTTP path, GET /model).
-- At the end it prints one line `BENCH_JSON {...}` that bench/load.py reads (times in µs).
-- Docs: https://github.com/wg/wrk/blob/master/SCRIPTING
wrk.method = os.getenv("METHOD") or "POST"
local key = os.getenv("API_KEY")
if key and key ~= "" then
  wrk.headers["X-API-Key"] = key
end
if wrk.method == "POST" then
  wrk.headers["Content-Type"] = "application/json"
  local file = assert(io.open(os.getenv("PAYLOAD"), "rb"))
  wrk.body = file:read("*a")
  file:close()
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
