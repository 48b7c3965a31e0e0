-- A hot reload: the graph is replaced by an edited version while the
-- kernel runs; requests after the reload get the new stage.
local s = require("spindle")
local sc = require("spindle.scenario")

s.pipeline "greet" {
  s.stage("greet", function(req)
    req.text = "hello " .. req.text
    req.version = 1
    return req
  end),
}

sc.request "before" { pipeline = "greet", text = "world" }
sc.wait { answer = "before" }
sc.reload "graphs/hot_reload_v2.lua"
sc.request "after" { pipeline = "greet", text = "world" }

sc.expect "before" { outcome = "ok", text = "hello world", fields = { version = 1 } }
sc.expect "after" { outcome = "ok", text = "bonjour world", fields = { version = 2 } }
