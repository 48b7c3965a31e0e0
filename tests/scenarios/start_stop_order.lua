-- Start and stop order: a chain of three services. Each starts once the
-- one it needs is ready; shutdown stops them in reverse order.
local s = require("spindle")
local sc = require("spindle.scenario")

s.service "db" { command = { "sleep", "60" } }
s.service "api" { command = { "sleep", "60" }, depends_on = { db = "healthy" } }
s.service "web" { command = { "sleep", "60" }, depends_on = { api = "healthy" } }

sc.wait { service = "web", state = "ready" }

sc.expect_order { "db ready", "api starting", "api ready", "web starting", "web ready" }
-- The shutdown after the timeline: web first, db last.
sc.expect_order { "web stopping", "web stopped", "api stopping", "api stopped", "db stopping" }
sc.expect_service "web" { state = "ready", restarts = 0 }
