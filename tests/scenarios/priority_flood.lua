-- A priority flood: twenty low-priority requests queue behind one slot
-- (each batch answered 50 ms late by its engine), then one high-priority
-- request arrives. Weighted-fair scheduling serves it next, not after the
-- flood.
local s = require("spindle")
local sc = require("spindle.scenario")

s.service "embedder" { embedding = { model = "paraphrase-MiniLM-L3-v2", threads = 1 } }
s.pipeline "work" {
  timeout = "120s",
  s.stage("embed", s.embed "embedder"),
}

sc.settings { in_flight = 1, reserved_for_high = 0 }
sc.wait { service = "embedder", state = "ready" }
sc.fault { engine_slow = "embedder", delay = "50ms", batches = 25 }

for i = 1, 20 do
  sc.request("bulk-" .. i) { pipeline = "work", text = "bulk " .. i, priority = "low", at = "0ms" }
end
sc.request "urgent" { pipeline = "work", text = "urgent", priority = "high", at = "1ms" }
sc.wait { answer = "bulk-20" }

sc.expect "urgent" { outcome = "ok", text = "urgent" }
sc.expect "bulk-20" { outcome = "ok" }
sc.expect_order { "request urgent answered", "request bulk-3 answered" }
sc.expect_latency { "urgent", at_most = 0.5, of = "bulk-20" }
