-- A killed service: SIGKILL to its process is a crash; the supervisor
-- restarts it after its backoff and it is ready again.
local s = require("spindle")
local sc = require("spindle.scenario")

s.service "worker" {
  command = { "sleep", "60" },
  restart = { policy = "on-failure", backoff = "10ms", jitter = 0 },
}

sc.wait { service = "worker", state = "ready" }
sc.fault { kill = "worker" }
sc.wait { service = "worker", state = "ready" }

sc.expect_service "worker" { state = "ready", restarts = 1 }
sc.expect_order { "worker ready", "worker failed", "worker backing-off", "worker ready" }
