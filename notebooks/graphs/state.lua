-- The graph of notebooks/state.ipynb: a pipeline whose stage counts the
-- words it sees in its pipeline's durable state (`s.state`) and keeps the
-- last text in the global scope. Cells read and write the same store.
local s = require("spindle")

s.pipeline "words" {
  s.stage("count", function(req)
    local counts = s.state("pipeline", req)
    local words = 0
    for word in req.text:lower():gmatch("%a+") do
      counts.incr("word:" .. word)
      words = words + 1
    end
    s.state().set("last_text", req.text)
    req.words = words
    return req
  end),
}
