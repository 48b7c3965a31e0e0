// spindle dap driven by a DAP client nobody here wrote:
// @vscode/debugadapter-testsupport's DebugClient, which starts the adapter
// as `spindle dap` (exactly one argument). Requests reach the graph over
// HTTP, as they would in production. Run: node --test dap.test.mjs
// (SPINDLE_BIN points at the spindle binary; default target/debug/spindle).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { DebugClient } from '@vscode/debugadapter-testsupport';

const here = dirname(fileURLToPath(import.meta.url));
const SPINDLE = process.env.SPINDLE_BIN ?? resolve(here, '../../../target/debug/spindle');

const GRAPH = `local s = require("spindle")

local function shout(text)
  return text:upper()
end

s.pipeline "ingest" {
  s.stage("clean", function(req)
    local text = req.text:gsub("%s+", " ")
    req.text = text
    return req
  end),
  s.stage("tag", function(req)
    local loud = shout(req.text)
    req.loud = loud
    return req
  end),
}

s.pipeline "fragile" {
  s.stage("boom", function(req)
    local why = "no " .. req.text
    error(why)
  end),
}

s.pipeline "spin" {
  s.stage("loop", function(req)
    local n = 0
    while req.text ~= "stop" do n = n + 1 end
    return req
  end),
}
`;
// Lines of GRAPH.
const CLEAN_TEXT = 9;
const CLEAN_ASSIGN = 10;
const TAG_FIRST = 14;
const SHOUT_BODY = 4;
const BOOM_ERROR = 23;

function graphFile() {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-dap-'));
  const program = join(dir, 'graph.lua');
  writeFileSync(program, GRAPH);
  return { dir, program };
}

/** A started client with the graph launched; resolves with its HTTP address. */
async function launched(t, extra = {}) {
  const { dir, program } = graphFile();
  const dc = new DebugClient(SPINDLE, 'dap', 'spindle');
  dc.defaultTimeout = 20000;
  await dc.start();
  t.after(() => dc.stop());
  const outputs = [];
  const address = new Promise((resolveAddress) => {
    dc.on('output', (event) => {
      outputs.push(event.body);
      const found = /serving \d+ pipeline\(s\) on (http:\/\/[0-9.:]+)/.exec(event.body.output);
      if (found) resolveAddress(found[1]);
    });
  });
  await Promise.all([
    dc.waitForEvent('initialized'),
    dc.launch({ program, cwd: dir, args: ['--data-dir', join(dir, 'data')], ...extra }),
  ]);
  return { dc, program, http: await address, outputs, dir };
}

// A DebugClient attached to the kernel listening on `port` with the token
// in `tokenFile`; stopped when the test ends.
async function attachedTo(t, port, tokenFile) {
  const dc = new DebugClient(SPINDLE, 'dap', 'spindle');
  dc.defaultTimeout = 20000;
  await dc.start();
  t.after(() => dc.stop());
  await dc.initializeRequest();
  const token = readFileSync(tokenFile, 'utf8').trim();
  await Promise.all([dc.waitForEvent('initialized'), dc.attachRequest({ port, token })]);
  return { dc, token };
}

async function submit(http, text, pipeline = 'ingest', priority = 'medium') {
  const response = await fetch(`${http}/v1/pipelines/${pipeline}`, {
    method: 'POST',
    body: JSON.stringify({ text, priority }),
  });
  return response.json();
}

/**
 * Resolves once an `output` event with exactly `text` has come (it may
 * already have: `outputs` holds what came so far). The HTTP answer and the
 * output event travel different roads, so neither orders the other.
 */
function outputSeen(dc, outputs, text) {
  if (outputs.some((o) => o.output === text)) return Promise.resolve();
  return new Promise((resolveSeen) => {
    const listener = (event) => {
      if (event.body.output === text) {
        dc.removeListener('output', listener);
        resolveSeen();
      }
    };
    dc.on('output', listener);
  });
}

async function stopped(dc, reason) {
  const event = await dc.waitForEvent('stopped');
  if (reason) assert.equal(event.body.reason, reason);
  return event.body;
}

async function topFrame(dc, threadId) {
  const trace = await dc.stackTraceRequest({ threadId });
  return trace.body.stackFrames[0];
}

async function scope(dc, frameId, name) {
  const scopes = await dc.scopesRequest({ frameId });
  return scopes.body.scopes.find((s) => s.name === name);
}

test('a breakpoint in a stage stops one request; inspect, evaluate, set a variable, step across stages; others flow', async (t) => {
  const { dc, program, http } = await launched(t);
  // Only the cat stops: the condition names the request.
  const set = await dc.setBreakpointsRequest({
    source: { path: program },
    breakpoints: [{ line: CLEAN_ASSIGN, condition: 'req.text:find("cat")' }],
  });
  assert.equal(set.body.breakpoints[0].verified, true);
  await dc.configurationDoneRequest();

  const first = submit(http, 'a  cat  sat');
  const stop = await stopped(dc, 'breakpoint');
  const threads = await dc.threadsRequest();
  const thread = threads.body.threads.find((th) => th.id === stop.threadId);
  assert.match(thread.name, /^ingest #\d+ \(medium\)$/);

  const frame = await topFrame(dc, stop.threadId);
  assert.equal(frame.line, CLEAN_ASSIGN);
  assert.equal(frame.source.path, program);
  const request = await scope(dc, frame.id, 'Request');
  const fields = await dc.variablesRequest({ variablesReference: request.variablesReference });
  const priority = fields.body.variables.find((v) => v.name === 'priority');
  assert.equal(priority.value, '"medium"');

  const evaluated = await dc.evaluateRequest({ expression: 'text .. "!"', frameId: frame.id, context: 'watch' });
  assert.equal(evaluated.body.result, '"a cat sat!"');

  // A second request is answered while the first one is stopped.
  const second = await submit(http, 'b', 'ingest', 'high');
  assert.equal(second.status, 'ok');
  assert.equal(second.fields.loud, 'B');

  // Change the local that becomes req.text: the answer changes.
  const locals = await scope(dc, frame.id, 'Locals');
  const changed = await dc.setVariableRequest({ variablesReference: locals.variablesReference, name: 'text', value: '"a dog"' });
  assert.equal(changed.body.value, '"a dog"');

  // Step over to `return req`, out of the stage: the next stop is the
  // first line of the next stage; step in: into shout.
  await Promise.all([dc.nextRequest({ threadId: stop.threadId }), stopped(dc, 'step')]);
  await Promise.all([dc.stepOutRequest({ threadId: stop.threadId }), stopped(dc, 'step')]);
  assert.equal((await topFrame(dc, stop.threadId)).line, TAG_FIRST);
  await Promise.all([dc.stepInRequest({ threadId: stop.threadId }), stopped(dc, 'step')]);
  assert.equal((await topFrame(dc, stop.threadId)).line, SHOUT_BODY);

  await dc.continueRequest({ threadId: stop.threadId });
  const answer = await first;
  assert.equal(answer.status, 'ok');
  assert.equal(answer.text, 'a dog');
  assert.equal(answer.fields.loud, 'A DOG');
});

test('conditional, hit-count and log breakpoints', async (t) => {
  const { dc, program, http, outputs } = await launched(t);
  await dc.setBreakpointsRequest({
    source: { path: program },
    breakpoints: [
      { line: CLEAN_TEXT, condition: 'req.priority == "high"' },
      { line: TAG_FIRST, logMessage: 'tagging {req.text}' },
    ],
  });
  await dc.configurationDoneRequest();
  assert.equal((await submit(http, 'low one', 'ingest', 'low')).status, 'ok');
  const high = submit(http, 'high one', 'ingest', 'high');
  const stop = await stopped(dc, 'breakpoint');
  await dc.continueRequest({ threadId: stop.threadId });
  assert.equal((await high).status, 'ok');
  await outputSeen(dc, outputs, 'tagging low one\n');
  await outputSeen(dc, outputs, 'tagging high one\n');

  await dc.setBreakpointsRequest({ source: { path: program }, breakpoints: [{ line: TAG_FIRST, hitCondition: '2' }] });
  assert.equal((await submit(http, 'one')).status, 'ok');
  const two = submit(http, 'two');
  const hit = await stopped(dc, 'breakpoint');
  const evaluated = await dc.evaluateRequest({ expression: 'req.text', frameId: (await topFrame(dc, hit.threadId)).id });
  assert.equal(evaluated.body.result, '"two"');
  await dc.continueRequest({ threadId: hit.threadId });
  assert.equal((await two).status, 'ok');
});

test('function and exception breakpoints', async (t) => {
  const { dc, http } = await launched(t);
  const functions = await dc.setFunctionBreakpointsRequest({ breakpoints: [{ name: 'ingest/tag' }, { name: 'nowhere' }] });
  assert.deepEqual(functions.body.breakpoints.map((b) => b.verified), [true, false]);
  await dc.setExceptionBreakpointsRequest({ filters: ['unhandled'] });
  await dc.configurationDoneRequest();

  const tagged = submit(http, 'x');
  const atStage = await stopped(dc, 'function breakpoint');
  assert.equal((await topFrame(dc, atStage.threadId)).line, TAG_FIRST);
  await dc.continueRequest({ threadId: atStage.threadId });
  assert.equal((await tagged).status, 'ok');

  const failing = submit(http, 'luck', 'fragile');
  const error = await stopped(dc, 'exception');
  assert.match(error.text, /no luck/);
  // The innermost frame is `error` itself (a builtin); the stage's is next.
  const trace = await dc.stackTraceRequest({ threadId: error.threadId });
  assert.equal(trace.body.stackFrames.find((f) => f.line > 0).line, BOOM_ERROR);
  await dc.continueRequest({ threadId: error.threadId });
  assert.equal((await failing).status, 'error');
});

test('pause stops a request busy in a loop; unknown commands get an error response', async (t) => {
  const { dc, http } = await launched(t);
  await dc.configurationDoneRequest();
  const spinning = submit(http, 'go', 'spin');
  const started = await dc.waitForEvent('thread');
  assert.equal(started.body.reason, 'started');
  // The stop may come before the pause's response: wait for both.
  const [, stop] = await Promise.all([
    dc.pauseRequest({ threadId: started.body.threadId }),
    stopped(dc, 'pause'),
  ]);
  const request = await scope(dc, (await topFrame(dc, stop.threadId)).id, 'Request');
  await dc.setVariableRequest({ variablesReference: request.variablesReference, name: 'text', value: '"stop"' });
  await dc.continueRequest({ threadId: stop.threadId });
  assert.equal((await spinning).text, 'stop');

  await assert.rejects(dc.customRequest('fly'), /unknown command `fly`/);
  const sources = await dc.customRequest('loadedSources');
  assert.ok(sources.body.sources.length >= 1);
});

test('attach to spindle run --debug-port; disconnect leaves the graph serving', async (t) => {
  const { dir, program } = graphFile();
  const run = spawn(SPINDLE, ['run', program, '--http', '127.0.0.1:0', '--debug-port', '0', '--data-dir', join(dir, 'data')], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.after(() => run.kill('SIGTERM'));
  // Read its stderr to the end (never close it early: spindle keeps
  // printing there).
  const { http, port, tokenFile } = await new Promise((resolveFound) => {
    const found = {};
    createInterface({ input: run.stderr }).on('line', (line) => {
      const serving = /serving \d+ pipeline\(s\) on (http:\/\/[0-9.:]+)/.exec(line);
      if (serving) found.http = serving[1];
      const debug = /debugger listening on 127\.0\.0\.1:(\d+), token in (.+)$/.exec(line);
      if (debug) { found.port = Number(debug[1]); found.tokenFile = debug[2]; }
      if (found.http && found.port) resolveFound(found);
    });
  });
  const refused = new DebugClient(SPINDLE, 'dap', 'spindle');
  refused.defaultTimeout = 20000;
  await refused.start();
  await refused.initializeRequest();
  await assert.rejects(refused.attachRequest({ port, token: 'wrong' }), /token/);
  await refused.stop();

  const { dc: attached, token } = await attachedTo(t, port, tokenFile);

  // One debugger at a time: a second one with the right token is refused
  // while the first stays attached.
  const second = new DebugClient(SPINDLE, 'dap', 'spindle');
  second.defaultTimeout = 20000;
  await second.start();
  await second.initializeRequest();
  await assert.rejects(second.attachRequest({ port, token }), /another debugger is attached/);
  await second.stop();

  await attached.setBreakpointsRequest({ source: { path: program }, breakpoints: [{ line: CLEAN_ASSIGN }] });
  await attached.configurationDoneRequest();
  const held = submit(http, 'held');
  await stopped(attached, 'breakpoint');
  // Detaching lets the stopped request go and leaves the graph serving.
  await attached.disconnectRequest({});
  assert.equal((await held).status, 'ok');
  const after = await submit(http, 'after  detach');
  assert.equal(after.status, 'ok');
  assert.equal(after.text, 'after detach');
});

// `spindle replay --debug-port` on a scenario: the replay waits for a line
// on stdin while the debugger attaches and sets its breakpoints; then the
// replayed request stops at the breakpoint in the graph the scenario
// requires, and once continued the scenario ends with its expectation met.
test('a replayed scenario request stops at a breakpoint under spindle replay --debug-port', async (t) => {
  const { dir, program } = graphFile();
  const scenario = join(dir, 'scenario.lua');
  writeFileSync(scenario, [
    'require("graph")',
    'local sc = require("spindle.scenario")',
    'sc.request "held" { pipeline = "ingest", text = "held   under the debugger" }',
    'sc.expect "held" { outcome = "ok", text = "held under the debugger" }',
    '',
  ].join('\n'));
  const replay = spawn(SPINDLE, ['replay', scenario, '--debug-port', '0', '--data-dir', join(dir, 'data')], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.after(() => replay.kill('SIGTERM'));
  let stdout = '';
  replay.stdout.on('data', (chunk) => { stdout += chunk; });
  const exited = new Promise((resolveExit) => replay.on('exit', (code) => resolveExit(code)));
  const { port, tokenFile } = await new Promise((resolveFound) => {
    createInterface({ input: replay.stderr }).on('line', (line) => {
      const debug = /debugger listening on 127\.0\.0\.1:(\d+), token in (.+)$/.exec(line);
      if (debug) resolveFound({ port: Number(debug[1]), tokenFile: debug[2] });
    });
  });

  const { dc } = await attachedTo(t, port, tokenFile);
  const set = await dc.setBreakpointsRequest({ source: { path: program }, breakpoints: [{ line: CLEAN_ASSIGN }] });
  assert.equal(set.body.breakpoints[0].verified, true);
  await dc.configurationDoneRequest();

  // Start the replay; its one request stops in the `clean` stage.
  replay.stdin.write('\n');
  const stop = await stopped(dc, 'breakpoint');
  const frame = await topFrame(dc, stop.threadId);
  assert.equal(frame.line, CLEAN_ASSIGN);
  assert.equal(frame.source.path, program);
  await dc.continueRequest({ threadId: stop.threadId });

  assert.equal(await exited, 0, stdout);
  assert.match(stdout, /1 pass, 0 fail/);
});

// The adapter answers what a graph that ends never answered: here the graph
// cannot start (its script does not parse), so the breakpoints sent behind
// the launch wait for a connection that never comes.
test('requests behind a launch whose graph cannot start still get their answer', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-dap-'));
  const program = join(dir, 'broken.lua');
  writeFileSync(program, 'local s = require("spindle")\ns.pipeline "p" {\n');
  const dc = new DebugClient(SPINDLE, 'dap', 'spindle');
  dc.defaultTimeout = 20000;
  await dc.start();
  t.after(() => dc.stop());
  await dc.initializeRequest();
  const launch = dc.launchRequest({ program, cwd: dir, args: ['--data-dir', join(dir, 'data')] });
  const breakpoints = dc.setBreakpointsRequest({ source: { path: program }, breakpoints: [{ line: 2 }] });
  await assert.rejects(launch, /the graph ended before its debug port answered/);
  await assert.rejects(breakpoints, /the graph ended before it answered `setBreakpoints`/);
});

// A bound, not a synchronisation: the suite fails instead of waiting forever.
// It once ran out here when the `threads` request below reached the graph as
// it ended and nobody answered it; the adapter now answers what a graph that
// ends leaves unanswered (the test above).
test('restart relaunches the graph with its breakpoints; terminate ends it', { timeout: 120_000 }, async (t) => {
  const { dc, program, http } = await launched(t);
  await dc.setBreakpointsRequest({ source: { path: program }, breakpoints: [{ line: CLEAN_ASSIGN }] });
  await dc.configurationDoneRequest();

  // The relaunched graph prints its new address (port 0: a new one).
  const relaunched = new Promise((resolveAddress) => {
    dc.on('output', (event) => {
      const found = /serving \d+ pipeline\(s\) on (http:\/\/[0-9.:]+)/.exec(event.body.output);
      if (found && found[1] !== http) resolveAddress(found[1]);
    });
  });
  await dc.restartRequest({});
  const again = await relaunched;
  await assert.rejects(fetch(`${http}/v1/status`), 'the first graph is gone');

  // The breakpoint set before the restart holds in the new graph.
  const held = submit(again, 'again');
  const stop = await stopped(dc, 'breakpoint');
  await dc.continueRequest({ threadId: stop.threadId });
  assert.equal((await held).text, 'again');

  // terminate: the graph shuts down, the client hears `terminated` once.
  let terminatedEvents = 0;
  dc.on('terminated', () => { terminatedEvents += 1; });
  await Promise.all([dc.terminateRequest(), dc.waitForEvent('terminated')]);
  await assert.rejects(fetch(`${again}/v1/status`), 'the graph is gone');
  // The adapter still answers; a second terminated would have come by now.
  await dc.customRequest('threads').catch(() => {});
  assert.equal(terminatedEvents, 1);
});
