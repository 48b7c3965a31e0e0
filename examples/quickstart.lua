-- Spindle quickstart: a small service graph of real processes.
--
--   spindle check examples/quickstart.lua     diagnostics only
--   spindle graph examples/quickstart.lua     startup waves
--   spindle run   examples/quickstart.lua     run it; Ctrl-C stops it in reverse order
--
-- The services are stand-ins built from what every machine has (python3, sh),
-- so the graph runs anywhere: a "vector database" answering HTTP, a one-shot
-- migration, an API that needs both, and a worker watched by a Lua probe.
-- They are quiet on purpose, so the terminal shows state changes: the HTTP
-- stand-ins run quiet_http_server.py (next to this script; a service's
-- working directory is the script's folder), which does not log each probe.

local s = require("spindle")

s.service "vectordb" {
  command = { "python3", "quiet_http_server.py", "6333" },
  -- Dependents wait for this probe: migrate and api start once it passes.
  ready = s.http_probe { url = "http://127.0.0.1:6333/", period = "500ms" },
  restart = { policy = "on-failure", backoff = "200ms..10s", max = 5, window = "60s" },
  critical = true,
}

s.service "migrate" {
  command = "echo 'applying schema'; sleep 0.3; echo 'schema ready'",
  depends_on = { vectordb = "healthy" },
  restart = "no",
}

s.service "api" {
  command = { "python3", "quiet_http_server.py", "8080" },
  depends_on = { vectordb = "healthy", migrate = "completed" },
  ready = s.tcp_probe { address = "127.0.0.1:8080", period = "500ms" },
  live = s.http_probe { url = "http://127.0.0.1:8080/", period = "5s", failures = 3 },
  stop = { signal = "SIGTERM", grace = "2s" },
}

local heartbeats = 0
s.service "worker" {
  command = { "sh", "-c", "echo 'waiting for jobs'; while true; do sleep 60; done" },
  depends_on = { api = "healthy" },
  live = s.lua_probe {
    period = "5s",
    check = function()
      heartbeats = heartbeats + 1
      return true
    end,
  },
  restart = { policy = "always", backoff = "500ms..5s" },
}

-- An in-process embedding engine (ONNX Runtime) and a pipeline that uses it.
-- With `spindle run examples/quickstart.lua --http 127.0.0.1:7700`:
--   curl -d '{"text": "a  cat sat on the mat"}' http://127.0.0.1:7700/v1/pipelines/ingest
s.service "embedder" {
  embedding = { model = "all-MiniLM-L6-v2", providers = { "cuda", "cpu" } },
}

s.pipeline "ingest" {
  from = { s.http_route "/v1/ingest" },
  timeout = { high = "5s", medium = "15s", low = "60s" },
  s.stage("clean", function(req) req.text = req.text:gsub("%s+", " ") return req end),
  s.stage("embed", s.embed "embedder"),
  s.stage("tag", function(req) req.dims = #req.vector return req end),
}
