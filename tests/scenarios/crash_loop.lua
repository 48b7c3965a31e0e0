-- A crash loop: a service that exits at once is restarted with backoff
-- until the crash-loop limit, then gives up.
local s = require("spindle")
local sc = require("spindle.scenario")

s.service "flaky" {
  command = "exit 3",
  restart = { policy = "on-failure", backoff = "10ms..40ms", jitter = 0, max = 2, window = "60s" },
}

sc.wait { service = "flaky", state = "gave-up" }

sc.expect_service "flaky" { state = "gave-up", restarts = 2 }
sc.expect_order { "flaky failed", "flaky backing-off", "flaky restarting", "flaky failed", "flaky gave-up" }
