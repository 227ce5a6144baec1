-- Shared by the per-protocol scripts: POST one JSON body built from a rows file
-- (script argument 1: a file holding a JSON list of rows), count non-2xx answers, and
-- print the results as one JSON line ("WRK_JSON {...}") that bench/run.py parses.
local M = {}
local threads = {}

function M.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

function M.install(make_body)
  function setup(thread)
    table.insert(threads, thread)
  end

  function init(args)
    non2xx = 0
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    wrk.body = make_body(M.read(args[1]))
  end

  function response(status, headers, body)
    if status < 200 or status > 299 then
      non2xx = non2xx + 1
    end
  end

  function done(summary, latency, requests)
    local n = 0
    for _, t in ipairs(threads) do
      n = n + (t:get("non2xx") or 0)
    end
    local e = summary.errors
    io.write(string.format(
      'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "non2xx": %d, ' ..
      '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, ' ..
      '"p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %.1f, "max_us": %d}\n',
      summary.requests, summary.duration, summary.bytes, n,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.mean, latency.max))
  end
end


return M
