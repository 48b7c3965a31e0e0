---@meta spindle
-- LuaCATS annotations of the `spindle` module for LuaLS and EmmyLua.
-- They describe what scripts may write; Spindle itself checks the same rules
-- (`spindle check`). Keep in step with docs/guide.md.

---@alias spindle.Duration string|number A duration: "250ms", "2s", "1m30s", or seconds.
---@alias spindle.Condition "started"|"healthy"|"completed"|"completed_successfully"
---@alias spindle.Policy "no"|"on-failure"|"always"
---@alias spindle.Signal "SIGTERM"|"SIGINT"|"SIGQUIT"|"SIGHUP"|"SIGUSR1"|"SIGUSR2"|"SIGKILL"
---@alias spindle.Provider "cuda"|"cpu"

---@class spindle.Probe A probe made by one of the *_probe functions.

---@class spindle.StageOptions Options of s.stage("name", { ... }, function(req) ... end).
---@field budget? spindle.Duration Lua time one run of the stage may take (default: the pipeline's `budget`, else "1s").

---@class spindle.ProbeFields
---@field period? spindle.Duration Time between checks (default "1s").
---@field timeout? spindle.Duration A check that takes longer fails (default "1s").
---@field failures? integer Consecutive failures before the probe fails (default 3).
---@field successes? integer Consecutive successes before it passes again (default 1).
---@field initial_delay? spindle.Duration Wait before the first check (default "0s").

---@class spindle.ExecProbeFields: spindle.ProbeFields
---@field command string[]|string Exit status 0 passes; a string runs under sh -c.

---@class spindle.HttpProbeFields: spindle.ProbeFields
---@field url string An http:// URL; a status of 200..399 passes.

---@class spindle.TcpProbeFields: spindle.ProbeFields
---@field address string "host:port"; an accepted connection passes.

---@class spindle.LuaProbeFields: spindle.ProbeFields
---@field check fun(): any A truthy result passes; an error fails with its line.

---@class spindle.Restart
---@field policy? spindle.Policy Default "on-failure".
---@field backoff? string First delay..cap, e.g. "200ms..10s"; doubles in between.
---@field jitter? number Random fraction added to each delay, 0..1 (default 0.1).
---@field max? integer More restarts than this within `window` and the service gives up (default 5).
---@field window? spindle.Duration Crash-loop window (default "60s").

---@class spindle.Stop
---@field signal? spindle.Signal Sent to the whole process group first (default "SIGTERM").
---@field grace? spindle.Duration Then SIGKILL after this long (default "5s").

---@class spindle.Embedding
---@field model string A model from `spindle models list`.
---@field providers? spindle.Provider[] In order of preference (default { "cpu" }).
---@field max_batch_tokens? integer Token budget of one batch (default 8192).
---@field threads? integer Intra-op threads (default one per core).

---@class spindle.Service
---@field command? string[]|string The program and its arguments; a string runs under sh -c.
---@field embedding? spindle.Embedding An in-process embedding engine instead of a process.
---@field cwd? string Working directory, relative to the script's folder.
---@field env? table<string, string|number> Extra environment.
---@field env_file? string|string[] Files of NAME=value lines.
---@field depends_on? table<string, spindle.Condition>|string[]|string
---@field ready? spindle.Probe Readiness probe.
---@field live? spindle.Probe Liveness probe.
---@field restart? spindle.Restart|spindle.Policy
---@field stop? spindle.Stop
---@field critical? boolean A critical service that gives up ends the run.
---@field description? string

---@class spindlelib
---@field version string
local spindle = {}

---Declares a service: `s.service "name" { ... }`.
---@param name string
---@param fields? spindle.Service
---@return fun(fields: spindle.Service)|nil
function spindle.service(name, fields) end

---@param fields spindle.ExecProbeFields
---@return spindle.Probe
function spindle.exec_probe(fields) end

---@param fields spindle.HttpProbeFields
---@return spindle.Probe
function spindle.http_probe(fields) end

---@param fields spindle.TcpProbeFields
---@return spindle.Probe
function spindle.tcp_probe(fields) end

---@param fields spindle.LuaProbeFields
---@return spindle.Probe
function spindle.lua_probe(fields) end

return spindle
