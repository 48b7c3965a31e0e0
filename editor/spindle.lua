---@meta spindle
-- LuaCATS annotations of the `spindle` module for LuaLS and EmmyLua: add this
-- folder to the workspace library ("Lua.workspace.library": ["editor"]).
-- They describe what scripts may write; Spindle itself checks the same rules
-- (`spindle check`). docs/guide.md is the prose version.
--
-- scripting/tests/annotations.rs fails when the module gains a function or a
-- converter gains a field that this file does not declare (or the reverse):
-- keep the two in step.

---A duration: a string with a unit ("250ms", "2s", "1.5s", "5m", "1h",
---"1m30s"), or a number of seconds.
---@alias spindle.Duration string|number

---@alias spindle.Condition
---| "started" # The dependency has been started (its process exists).
---| "healthy" # The dependency is ready: its readiness probe passes (or it runs, without one).
---| "completed" # The dependency exited with status 0 (one-shot jobs such as migrations).
---| "completed_successfully" # Another spelling of "completed".

---@alias spindle.Policy
---| "no" # Never restart.
---| "on-failure" # Restart after a non-zero exit, a signal, or a liveness failure.
---| "always" # Also restart after a clean exit.

---The signal sent first on stop; the `SIG` prefix is optional.
---@alias spindle.Signal
---| "SIGTERM"
---| "SIGINT"
---| "SIGQUIT"
---| "SIGHUP"
---| "SIGUSR1"
---| "SIGUSR2"
---| "SIGKILL"
---| "TERM"
---| "INT"
---| "QUIT"
---| "HUP"
---| "USR1"
---| "USR2"
---| "KILL"

---@alias spindle.Provider
---| "cuda" # NVIDIA GPUs through ONNX Runtime's CUDA provider, when present.
---| "cpu" # Always available.

---@alias spindle.Priority "high"|"medium"|"low"

-- Services ---------------------------------------------------------------

---The fields of `s.service "name" { ... }`. A service is either a process
---(`command`) or an in-process embedding engine (`embedding`).
---@class spindle.Service
---@field command? string[]|string The program and its arguments; a string runs under `sh -c`.
---@field embedding? spindle.Embedding An in-process embedding engine instead of a process.
---@field cwd? string Working directory, relative to the script's folder (default: the script's folder).
---@field env? table<string, string|number> Extra environment variables.
---@field env_file? string|string[] Files of `NAME=value` lines, read when the script is checked; `env` overrides them.
---@field depends_on? table<string, spindle.Condition>|string[]|string Services this one waits for: `{ db = "healthy" }`; a list or a single name means "started".
---@field ready? spindle.Probe Readiness: the service is ready (healthy) once it passes; without one, as soon as it runs.
---@field live? spindle.Probe Liveness: when it fails, the service is restarted by its restart policy.
---@field restart? spindle.Restart|spindle.Policy Recovery (default `{ policy = "on-failure" }`); a string sets only the policy.
---@field stop? spindle.Stop How the service is stopped (default `{ signal = "SIGTERM", grace = "5s" }`).
---@field critical? boolean When a critical service gives up, the whole run stops and exits non-zero (default false).
---@field description? string Free text for people and tools.

---The `embedding` table of a service: an ONNX Runtime engine in the kernel,
---or, with `url`, an embedding server elsewhere.
---@class spindle.Embedding
---@field model string A model from `spindle models list`, e.g. "all-MiniLM-L6-v2"; with `url`, the name the server knows the model by.
---@field providers? spindle.Provider[] In order of preference (default `{ "cpu" }`); the engine says which one it runs on. Not for a server.
---@field max_batch_tokens? integer Token budget of one batch (default 8192).
---@field threads? integer Intra-op threads of each session (default: the cores shared out among the sessions). Not for a server.
---@field sessions? integer Sessions run side by side, each batch on whichever is free (default 1); more suit throughput, one suits a lone request's latency. Each holds its own copy of the model. Not for a server.
---@field url? string An embedding server's root, "http://host:port": the vectors are computed there, in batches, with the same breaker, retries and readiness as a local engine.
---@field api? spindle.RemoteApi What the server speaks (default "openai": `POST /v1/embeddings`; "tei": `POST /embed`).
---@field timeout? spindle.Duration How long one batch may take on the server (default "30s").
---@field dimensions? integer The vectors' dimension; checked against the server's when the service starts.
---@field health? string The server's health route, polled as the service's readiness probe unless it declares `ready` (default "/health").

---The HTTP API of an embedding server.
---@alias spindle.RemoteApi
---| "openai" # OpenAI-compatible `POST /v1/embeddings` (infinity, vLLM, LiteLLM, ...)
---| "tei" # Text Embeddings Inference's `POST /embed`

---The `restart` table of a service.
---@class spindle.Restart
---@field policy? spindle.Policy When to restart (default "on-failure").
---@field backoff? string|spindle.Duration First delay..cap, e.g. "200ms..10s"; doubles after each restart, resets after a whole window ready. A single duration sets the first delay.
---@field jitter? number Random fraction of each delay added to it, 0 to 1 (default 0.1).
---@field max? integer Crash-loop limit: more restarts than this within `window` and the service gives up (default 5).
---@field window? spindle.Duration The crash-loop window (default "60s").

---The `stop` table of a service.
---@class spindle.Stop
---@field signal? spindle.Signal Sent to the service's whole process group first (default "SIGTERM").
---@field grace? spindle.Duration Then whatever is left of the group is killed with SIGKILL (default "5s").

-- Probes -----------------------------------------------------------------

---A probe, made by `s.exec_probe`, `s.http_probe`, `s.tcp_probe` or
---`s.lua_probe`; used as a service's `ready` or `live`.
---@class spindle.Probe

---The timing fields every probe takes.
---@class spindle.ProbeFields
---@field period? spindle.Duration Time between checks (default "1s").
---@field timeout? spindle.Duration A check that takes longer fails; a Lua check is stopped at it (default "1s").
---@field failures? integer Consecutive failures before the probe counts as failing (default 3).
---@field successes? integer Consecutive successes before a failing probe passes again (default 1).
---@field initial_delay? spindle.Duration Wait after the start before the first check (default "0s").

---@class spindle.ExecProbeFields: spindle.ProbeFields
---@field command string[]|string Exit status 0 passes; a string runs under `sh -c`.

---@class spindle.HttpProbeFields: spindle.ProbeFields
---@field url string An http:// URL; a status of 200..399 passes.

---@class spindle.TcpProbeFields: spindle.ProbeFields
---@field address string "host:port"; an accepted connection passes.

---@class spindle.LuaProbeFields: spindle.ProbeFields
---@field check fun(): any Runs on the script's Lua state; a truthy result passes, an error fails with its line.

-- Pipelines --------------------------------------------------------------

---The request table `req` that flows through a pipeline's stages.
---@class spindle.Request
---@field id integer The kernel's id of this request.
---@field correlation_id string The caller's correlation id (or one made up for it).
---@field pipeline string The pipeline's name.
---@field priority spindle.Priority The request's priority.
---@field text string The text to embed; stages may rewrite it.
---@field vector? number[] The embedding, once an embed stage has run.
---@field [string] string|number|boolean Fields a stage adds come back in the answer's `fields`.

---A stage, made by `s.stage`.
---@class spindle.Stage

---An embed stage's body, made by `s.embed`.
---@class spindle.Embed

---A source of requests, made by `s.http_route` or `s.netlink`.
---@class spindle.Source

---The fields and stages of `s.pipeline "name" { ... }`: the stages in order,
---plus named fields.
---@class spindle.Pipeline
---@field [integer] spindle.Stage The stages, run in order.
---@field from? spindle.Source[]|spindle.Source Extra sources; every pipeline also has POST /v1/pipelines/NAME.
---@field timeout? spindle.Duration|spindle.Timeouts One duration for every priority, or one per priority (defaults 5s, 15s, 60s).
---@field fallback? fun(req: spindle.Request, err: string): spindle.Request? Called when a stage fails; what it returns is the answer, marked degraded.
---@field description? string Free text for people and tools.
---@field budget? spindle.Duration Lua time one run of each of its Lua stages (and its fallback) may take; a runaway is stopped with an error naming the stage and line (default "1s").

---The options of `s.stage("name", { ... }, body)`, between the name and the body.
---@class spindle.StageOptions
---@field budget? spindle.Duration Lua time one run of this stage may take (default: the pipeline's `budget`, else "1s").

---A pipeline's `timeout` per priority; a caller's own shorter deadline applies.
---@class spindle.Timeouts
---@field high? spindle.Duration Timeout of high-priority requests (default "5s").
---@field medium? spindle.Duration Timeout of medium-priority requests (default "15s").
---@field low? spindle.Duration Timeout of low-priority requests (default "60s").

---The table form of `s.embed { ... }`.
---@class spindle.EmbedFields
---@field service? string The embedding service that embeds `req.text` into `req.vector` (or name several with `services`).
---@field services? string[] Embedding services that share the stage's work: each text goes to the one serving with the fewest texts in flight, and to the next when one fails (local and remote services mix).
---@field fallback? string An embedding service used when `service` fails or its circuit breaker is open; such answers are marked `embed_fallback`.

---The fields of `s.netlink { ... }`.
---@class spindle.NetlinkFields
---@field family? string The generic netlink family (default "spindle").

---The run's settings (`s.settings { ... }`); each is the same as a `spindle run`
---flag, and the flag wins when both are given.
---@class spindle.Settings
---@field journal? string Record the session (every request with its stages' outputs and timings, every service event and operation) in this folder, relative to the script's folder; the same as `spindle run --journal DIR`.

-- Notebook cells ------------------------------------------------------------

---A request as `s.submit` takes it: the text, or a table with options.
---@class spindle.Submission
---@field text string The text the pipeline gets as `req.text`.
---@field priority? spindle.Priority The request's priority (default "medium").
---@field timeout? spindle.Duration A deadline shorter than the pipeline's timeout.
---@field correlation_id? string The caller's id, to find or cancel the request.

---What `s.up()` or `s.down()` changed, by service name.
---@class spindle.ApplyReport
---@field added string[] Services started.
---@field changed string[] Services restarted with their new declaration.
---@field removed string[] Services stopped and removed.
---@field unchanged string[] Services left running as they were.

---The answer to a request submitted from a cell.
---@class spindle.Answer
---@field outcome "ok"|"error"|"timeout"|"rejected"|"cancelled" The request's one terminal answer.
---@field id? integer The kernel's id of the request.
---@field pipeline? string The pipeline that answered.
---@field priority? spindle.Priority The request's priority.
---@field text? string The answer's text (ok).
---@field vector? number[] The embedding (ok, when the pipeline embeds).
---@field fields? table<string, string> Fields the stages set on `req` (ok).
---@field stages? table[] `{ name = ..., ms = ... }` for each stage (ok).
---@field latency_ms? number Time from submission to answer.
---@field degraded? boolean The pipeline's fallback produced the answer.
---@field error? string Why it failed (error, timeout, rejected, cancelled).

---A chart `s.display` draws as SVG.
---@class spindle.Chart
---@field kind "bar"|"line"|"scatter"|"heatmap"|"histogram" What to draw.
---@field title? string A title above the chart.
---@field x? (number|string)[] Positions or labels along x (bar, line, scatter).
---@field y? number[] Values along y, for one series.
---@field series? table<string, number[]> Several named series of `y` values (line, bar).
---@field values? number[]|number[][] The numbers of a histogram, or the rows of a heatmap.
---@field labels? string[] Row and column labels of a heatmap.
---@field x_label? string The x axis' caption.
---@field y_label? string The y axis' caption.

---Options of `s.display`.
---@class spindle.DisplayOptions
---@field id? string|boolean A display id to update later with `s.update_display`; `true` makes one up.

---The functions of one scope of `s.state`; each waits for the store while
---other requests run on.
---@class spindle.StateScope
---@field get function `get(key)`: the value, or nil.
---@field set function `set(key, value, { ttl = "10m" })`: stores a boolean, number, string or vector; returns the value before.
---@field cas function `cas(key, expected, new, { ttl = ... })`: stores `new` (nil deletes) only if the value is `expected` (nil: absent), atomically; returns whether it did and the value now.
---@field incr function `incr(key, by)`: adds `by` (default 1) to an integer (absent is 0), atomically; returns the new value.
---@field delete function `delete(key)`: returns the value before.
---@field list function `list(prefix, { limit = 1000 })`: a table of the live keys that start with `prefix`.

-- The module -------------------------------------------------------------

---The `spindle` module: `local s = require("spindle")`.
---@class spindlelib
---@field version string Spindle's version, e.g. "0.1.0".
local spindle = {}

---Declares a service: `s.service "name" { fields }` or
---`s.service("name", { fields })`. The name must be unique in the graph.
---@param name string
---@param fields? spindle.Service
---@return (fun(fields: spindle.Service))? declare Without `fields`: the function that takes them.
function spindle.service(name, fields) end

---A readiness or liveness probe that runs a command: exit status 0 passes.
---@param fields spindle.ExecProbeFields
---@return spindle.Probe
function spindle.exec_probe(fields) end

---A probe that GETs a URL: a status of 200..399 passes.
---@param fields spindle.HttpProbeFields
---@return spindle.Probe
function spindle.http_probe(fields) end

---A probe that connects to an address: an accepted connection passes.
---@param fields spindle.TcpProbeFields
---@return spindle.Probe
function spindle.tcp_probe(fields) end

---A probe that calls a Lua function on the script's state: a truthy result
---passes.
---@param fields spindle.LuaProbeFields
---@return spindle.Probe
function spindle.lua_probe(fields) end

---Declares a pipeline, the path a request takes: `s.pipeline "name" { stages }`
---or `s.pipeline("name", { stages })`. The name must be unique.
---@param name string
---@param fields? spindle.Pipeline
---@return (fun(fields: spindle.Pipeline))? declare Without `fields`: the function that takes them.
function spindle.pipeline(name, fields) end

---A stage of a pipeline: a Lua function that gets `req` and returns it (or
---nothing, to keep it), or `s.embed "service"`. An error fails the request
---with the pipeline, stage, file and line. Stage names are unique within
---their pipeline. `s.stage("name", { budget = "50ms" }, body)` gives the
---stage its own options.
---@param name string
---@param body (fun(req: spindle.Request): spindle.Request?)|spindle.Embed
---@return spindle.Stage
---@overload fun(name: string, options: spindle.StageOptions, body: (fun(req: spindle.Request): spindle.Request?)|spindle.Embed): spindle.Stage
function spindle.stage(name, body) end

---The embedding stage's body: embeds `req.text` with an embedding service
---into `req.vector`. `s.embed "embedder"`,
---`s.embed { service = "embedder", fallback = "small" }`, or
---`s.embed { services = { "local", "remote" } }` to share the work.
---@param spec string|spindle.EmbedFields
---@return spindle.Embed
function spindle.embed(spec) end

---A source: a POST route that reaches the pipeline besides
---/v1/pipelines/NAME, e.g. `s.http_route "/v1/ingest"`.
---@param route string A path starting with `/`.
---@return spindle.Source
function spindle.http_route(route) end

---A source: requests from the Linux kernel module through the generic netlink
---family. `spindle run` serves such pipelines to the module (waiting for it
---to be loaded); see docs/netlink-protocol.md.
---@param fields? spindle.NetlinkFields
---@return spindle.Source
function spindle.netlink(fields) end

---The run's settings, once per script: `s.settings { journal = "journal" }`.
---Each is the same as a `spindle run` flag; the flag wins when both are given.
---@param fields spindle.Settings
function spindle.settings(fields) end

---Notebook cells only: runs the services and pipelines declared so far (by
---the script and by cells; a name declared again replaces the earlier
---declaration) as the kernel's graph: new services start, changed ones
---restart, removed ones stop, untouched ones keep running. A mistake in a
---declaration is the cell's error, with its line. Returns what changed.
---@return spindle.ApplyReport
function spindle.up() end

---Notebook cells only: stops every service (in reverse dependency order)
---and removes every pipeline; the declarations stay for the next `s.up()`.
---@return spindle.ApplyReport
function spindle.down() end

---Notebook cells only: submits a request to a pipeline and waits for its
---one answer. The cell waits; other requests flow on meanwhile. A request
---for a pipeline whose services are still starting waits for them within
---its deadline.
---@param pipeline string
---@param request string|spindle.Submission The text, or the text with options.
---@return spindle.Answer
function spindle.submit(pipeline, request) end

---Notebook cells only: submits several requests to a pipeline at once and
---waits for every answer; answers come back in the order of the requests.
---@param pipeline string
---@param requests (string|spindle.Submission)[]
---@return spindle.Answer[]
function spindle.submit_all(pipeline, requests) end

---Notebook cells only: the kernel's status: `run_id`, `ready`, `reasons`,
---`services`, `pipelines` and the live `requests`.
---@return table
function spindle.status() end

---Notebook cells only: each service's `name`, `kind`, `state`, `wave` and
---`depends_on`, in declaration order.
---@return table[]
function spindle.service_list() end

---Notebook cells only: each pipeline's `name`, `ready` and `reason`.
---@return table[]
function spindle.pipeline_list() end

---Notebook cells only: request counters (`submitted`, `ok`, `errors`, ...)
---and `latency`, one entry per pipeline, priority and outcome with `count`,
---`p50_ms`, `p90_ms` and `p99_ms`.
---@return table
function spindle.metrics() end

---Notebook cells only: the service graph with its waves and states;
---`s.display` draws it as SVG.
---@return table
function spindle.service_graph() end

---Notebook cells only: shows a value below the cell: a table as an HTML
---table, an answer as a summary, `s.chart` and `s.service_graph()` as SVG,
---`s.html` as HTML. Returns the display id when `options.id` is given.
---@param value any
---@param options? spindle.DisplayOptions
---@return string? id
function spindle.display(value, options) end

---Notebook cells only: replaces what the display `id` shows.
---@param id string
---@param value any
function spindle.update_display(id, value) end

---Notebook cells only: clears the cell's output; with `wait`, when the next
---output arrives.
---@param wait? boolean
function spindle.clear_output(wait) end

---Notebook cells only: shows help in the front end's pager: a `spindle`
---function's documentation (`s.help(s.submit)` or `s.help("submit")`), the
---module's functions (`s.help()`), or any other value's type and contents.
---@param value? any
function spindle.help(value) end

---A chart for `s.display`: `s.chart { kind = "line", x = {...}, y = {...} }`.
---@param spec spindle.Chart
---@return spindle.Chart
function spindle.chart(spec) end

---Raw HTML for `s.display`.
---@param html string
---@return table
function spindle.html(html) end

---The cosine similarity of two vectors (`req.vector`s or lists of numbers).
---@param a number[]
---@param b number[]
---@return number
function spindle.cosine(a, b) end

---Durable state for stages, kept by the kernel under the run's data
---directory (it survives a restart): `s.state()` is the global scope,
---`s.state("pipeline", req)` the scope of the request's pipeline,
---`s.state("request", req)` the request's own (by its correlation id).
---Expired keys (`ttl`) are gone. Works in the stages of a running kernel.
---@param scope? "global"|"pipeline"|"request"
---@param req? spindle.Request The request the stage got (for "pipeline" and "request").
---@return spindle.StateScope
function spindle.state(scope, req) end

return spindle
