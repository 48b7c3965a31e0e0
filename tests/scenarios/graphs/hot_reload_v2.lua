-- hot_reload.lua's graph after the edit (a plain graph script).
local s = require("spindle")

s.pipeline "greet" {
  s.stage("greet", function(req)
    req.text = "bonjour " .. req.text
    req.version = 2
    return req
  end),
}
