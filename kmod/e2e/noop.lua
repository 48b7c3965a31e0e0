-- A daemon that starts fast: for the registrations that must be refused.
local s = require("spindle")

s.pipeline "ingest" {
  from = { s.netlink { family = "spindle" } },
  s.stage("pass", function(req) return req end),
}
