-- Ready before served: a request submitted while its embedding service is
-- still loading waits in its queue and is answered once the service is
-- ready; "not started yet" is not a failure.
local s = require("spindle")
local sc = require("spindle.scenario")

s.service "embedder" { embedding = { model = "paraphrase-MiniLM-L3-v2", threads = 1 } }
s.pipeline "ingest" {
  timeout = "120s",
  s.stage("clean", function(req) req.text = req.text:lower() return req end),
  s.stage("embed", s.embed "embedder"),
}

-- At once, before the engine is loaded.
sc.request "early" { pipeline = "ingest", text = "The cat sat on the mat", priority = "high" }
sc.wait { answer = "early" }

sc.expect "early" {
  outcome = "ok",
  text = "the cat sat on the mat",
  vector = 384,
  similar = { text = "a cat is sitting on a mat", cosine = 0.7 },
}
sc.expect_order { "request early admitted", "embedder ready", "request early started", "request early answered" }
