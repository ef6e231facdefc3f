-- Argo CD health of a servelab.dev ServeBenchmark or QuantJob (the same script for both kinds).
-- Healthy only when the operator has finished the run of the current spec and it passed its gate;
-- Degraded when the run failed or failed its gate (Stalled=True); Progressing otherwise.
-- Lua 5.1 as gopher-lua runs it, with none of the standard libraries beyond base and table (Argo CD's
-- default for resource.customizations.health.*). Tests: health_test.yaml next to this file.
local hs = {}

local function condition(status, kind)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

-- "What (Reason): message", leaving out a reason that repeats what, and an empty message
local function describe(what, reason, message)
  local text = what
  if reason ~= nil and reason ~= "" and reason ~= what then
    text = text .. " (" .. reason .. ")"
  end
  if message ~= nil and message ~= "" then
    text = text .. ": " .. message
  end
  return text
end

local meta = obj.metadata or {}
local generation = meta.generation
local status = obj.status

if meta.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Pending deletion"
  if meta.finalizers ~= nil and #meta.finalizers > 0 then
    hs.message = hs.message .. "; blocked by finalizers: " .. table.concat(meta.finalizers, ", ")
  end
  return hs
end

if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the servelab operator to start the run"
  return hs
end

if generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the servelab operator to observe generation " .. generation ..
    " (status is of generation " .. status.observedGeneration .. ")"
  return hs
end

-- each condition carries the generation it was computed for: an old Ready=True must not count
local ready = condition(status, "Ready")
if ready == nil or (generation ~= nil and ready.observedGeneration ~= generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition of generation " .. (generation or "?")
  return hs
end

local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" and stalled.observedGeneration == ready.observedGeneration then
  hs.status = "Degraded"
  local verdict = status.verdict
  if status.phase == "Succeeded" and verdict ~= nil and verdict.passed == false then
    hs.message = describe("Gate failed", verdict.reason, verdict.message)
  else
    hs.message = describe("Run failed", stalled.reason, stalled.message)
  end
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe("Passed", ready.reason, status.message)
  return hs
end

local reconciling = condition(status, "Reconciling")
hs.status = "Progressing"
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = describe(status.phase or "Running", reconciling.reason, status.message or reconciling.message)
else
  hs.message = describe(status.phase or "Running", nil, status.message)
end
return hs
