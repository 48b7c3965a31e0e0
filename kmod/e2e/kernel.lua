-- The daemon's script inside the test VM: a real embedding pipeline and a
-- slow one (requests stay in flight long enough to kill their instance).
local s = require("spindle")

s.service "embedder" {
  embedding = { model = "paraphrase-MiniLM-L3-v2", threads = 1 },
}

s.pipeline "ingest" {
  -- Emulated CPUs are slow: the requests' own deadlines decide.
  timeout = "120s",
  from = { s.netlink { family = "spindle" } },
  s.stage("embed", s.embed "embedder"),
}

s.pipeline "slow" {
  timeout = "120s",
  -- Its stage spins on purpose; under TCG that takes longer than the
  -- default Lua budget of 1 s.
  budget = "30s",
  from = { s.netlink { family = "spindle" } },
  s.stage("wait", function(req)
    local start = os.clock()
    while os.clock() - start < 0.4 do end
    return req
  end),
}
