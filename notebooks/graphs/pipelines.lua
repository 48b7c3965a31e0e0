-- The graph of notebooks/pipelines.ipynb: a supervised process, and a
-- pipeline of Lua stages (no model needed) whose requests carry priorities.
local s = require("spindle")

s.service "store" {
  command = { "python3", "-c", "import time\nwhile True: time.sleep(60)" },
  restart = "on-failure",
}

s.pipeline "score" {
  s.stage("clean", function(req) req.text = req.text:lower():gsub("%s+", " ") return req end),
  s.stage("score", function(req)
    local score = 0
    for _ = 1, 2000 do
      for word in req.text:gmatch("%a+") do score = score + #word end
    end
    req.score = score
    return req
  end),
}
