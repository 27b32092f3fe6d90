-- wrk script: POST InvokeEndpoint requests, each to a target picked at random.
-- BENCH_TARGETS_FILE: one target model per line; BENCH_ENDPOINT; BENCH_BODY (a CSV row).
-- Requests are built once in init(); request() only picks one.

local requests = {}
local count = 0

function init(args)
  local path = os.getenv("BENCH_TARGETS_FILE")
  local endpoint = os.getenv("BENCH_ENDPOINT") or "modelyard"
  local body = os.getenv("BENCH_BODY") or "1994,3188,5,1.5,1.62,3"
  math.randomseed(os.time())
  for line in io.lines(path) do
    if line ~= "" then
      count = count + 1
      requests[count] = wrk.format(
        "POST",
        "/endpoints/" .. endpoint .. "/invocations",
        { ["Content-Type"] = "text/csv", ["X-Amzn-SageMaker-Target-Model"] = line },
        body
      )
    end
  end
  if count == 0 then
    error("no targets in " .. tostring(path))
  end
end

function request()
  return requests[math.random(count)]
end
