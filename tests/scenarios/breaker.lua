-- A circuit breaker opening and closing: two failed batches open the
-- embedding service's breaker, the next request fails fast without
-- reaching the engine; once `open_for` has passed, a probe goes through,
-- succeeds, and closes it.
local s = require("spindle")
local sc = require("spindle.scenario")

s.service "embedder" { embedding = { model = "paraphrase-MiniLM-L3-v2", threads = 1 } }
s.pipeline "ingest" {
  timeout = "120s",
  s.stage("embed", s.embed "embedder"),
}

sc.settings { breaker = { failures = 2, open_for = "300ms" }, attempts = 1 }

sc.wait { service = "embedder", state = "ready" }
sc.fault { engine_fails = "embedder", batches = 2 }
sc.request "fails-1" { pipeline = "ingest", text = "first" }
sc.wait { answer = "fails-1" }
sc.request "fails-2" { pipeline = "ingest", text = "second" }
sc.wait { answer = "fails-2" }
sc.request "fast-fail" { pipeline = "ingest", text = "third" }
sc.wait { answer = "fast-fail" }
-- Longer than open_for: the breaker lets a probe through.
sc.wait { at_least = "600ms" }
sc.request "probe" { pipeline = "ingest", text = "fourth" }
sc.wait { answer = "probe" }
sc.request "closed" { pipeline = "ingest", text = "fifth" }

sc.expect "fails-1" { outcome = "error", class = "transient", stage = "embed" }
sc.expect "fails-2" { outcome = "error", class = "transient", stage = "embed" }
-- The open breaker answers at once: the service counts as unavailable.
sc.expect "fast-fail" { outcome = "error", class = "unavailable", stage = "embed" }
sc.expect "probe" { outcome = "ok", vector = 384 }
sc.expect "closed" { outcome = "ok", vector = 384 }
