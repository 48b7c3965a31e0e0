-- A fallback answer: a stage fails, the pipeline's fallback answers
-- instead, marked degraded; a request that does not fail is not.
local s = require("spindle")
local sc = require("spindle.scenario")

s.pipeline "answer" {
  fallback = function(req, err)
    req.text = "sorry: " .. req.text
    req.because = "check failed"
    return req
  end,
  s.stage("check", function(req)
    if req.text:find("bad") then error("bad input") end
    return req
  end),
  s.stage("upper", function(req) req.text = req.text:upper() return req end),
}

sc.request "good" { pipeline = "answer", text = "hello" }
sc.request "bad" { pipeline = "answer", text = "bad input" }

sc.expect "good" { outcome = "ok", text = "HELLO", degraded = false }
sc.expect "bad" { outcome = "ok", text = "sorry: bad input", degraded = true, fields = { because = "check failed" } }
