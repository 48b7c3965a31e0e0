-- A cancel: a request queued behind a slow one (its engine answers the
-- batch 300 ms late) is cancelled; it is answered "cancelled" at once and
-- the next request still runs.
local s = require("spindle")
local sc = require("spindle.scenario")

s.service "embedder" { embedding = { model = "paraphrase-MiniLM-L3-v2", threads = 1 } }
s.pipeline "work" {
  timeout = "120s",
  s.stage("embed", s.embed "embedder"),
}

sc.settings { in_flight = 1 }
sc.wait { service = "embedder", state = "ready" }
sc.fault { engine_slow = "embedder", delay = "300ms", batches = 1 }

sc.request "blocker" { pipeline = "work", text = "slow" }
sc.request "victim" { pipeline = "work", text = "quick" }
sc.cancel "victim"
sc.request "after" { pipeline = "work", text = "quick" }
sc.wait { answer = "after" }

sc.expect "blocker" { outcome = "ok" }
sc.expect "victim" { outcome = "cancelled" }
sc.expect "after" { outcome = "ok" }
sc.expect_order { "request blocker started", "request victim answered", "request blocker answered" }
