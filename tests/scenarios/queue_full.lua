-- A full queue: while the one slot is busy (its engine answers the batch
-- 300 ms late), the low queue takes three
-- requests; the next low one is answered "busy" at once, and a high one
-- (its own queue) still gets in.
local s = require("spindle")
local sc = require("spindle.scenario")

s.service "embedder" { embedding = { model = "paraphrase-MiniLM-L3-v2", threads = 1 } }
s.pipeline "work" {
  timeout = "120s",
  s.stage("embed", s.embed "embedder"),
}

sc.settings { in_flight = 1, reserved_for_high = 0, queue = { low = 3 } }
sc.wait { service = "embedder", state = "ready" }
sc.fault { engine_slow = "embedder", delay = "300ms", batches = 1 }

sc.request "blocker" { pipeline = "work", text = "slow", priority = "high" }
sc.fill { pipeline = "work", priority = "low", text = "quick" }
sc.request "one-more" { pipeline = "work", text = "quick", priority = "low" }
sc.request "urgent" { pipeline = "work", text = "quick", priority = "high" }

sc.expect "one-more" { outcome = "rejected", reason = "busy" }
sc.expect "urgent" { outcome = "ok" }
