-- The graph of notebooks/embeddings.ipynb: one in-process embedding engine
-- and a pipeline that cleans and embeds a text.
local s = require("spindle")

s.service "embedder" {
  embedding = { model = "all-MiniLM-L6-v2", providers = { "cpu" } },
}

s.pipeline "embed" {
  s.stage("clean", function(req) req.text = req.text:gsub("%s+", " ") return req end),
  s.stage("embed", s.embed "embedder"),
}
