-- Argo CD health check of mpurelay.io/MpuRelayTask. Argo CD passes the object as `obj`.
-- It agrees with kstatus (Flux) row by row: README "GitOps health" has the table.
--   Suspended    spec.suspend is true, or the relay was stopped by its owner (StoppedByUser)
--   Progressing  no status yet, status.observedGeneration behind metadata.generation, a
--                transient polling error (Synced=False or Reconciling=True, Stalled=False), or
--                waiting for the channel
--   Degraded     Stalled=True (bad credentials, missing Secret, unknown task, a relay the cloud
--                stopped), or a relay stopped by the cloud (Stopped, ChannelStopped, CdnError,
--                StreamUrlError) while Ready=False
--   Healthy      Ready=True: the relay is running
--   Unknown      a status code the operator does not know
local hs = {}

local function condition(status, type)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function describe(c)
  if c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.reason
end

local stopped = { Stopped = true, ChannelStopped = true, CdnError = true, StreamUrlError = true }

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true: the operator does not poll this task"
  return hs
end

local status = obj.status
if status == nil or status.conditions == nil or #status.conditions == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator's first poll"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

local ready = condition(status, "Ready")
local phase = status.phase
if ready ~= nil and ready.status == "False" and phase ~= nil and stopped[phase] then
  hs.status = "Degraded"
  hs.message = status.message or describe(ready)
  return hs
end

local synced = condition(status, "Synced")
if synced ~= nil and synced.status == "False" then
  hs.status = "Progressing"
  hs.message = "Retrying: " .. describe(synced)
  return hs
end

local reconciling = condition(status, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  return hs
end

if phase == "StoppedByUser" then
  hs.status = "Suspended"
  hs.message = status.message or "The relay task was stopped by its owner"
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = status.message or describe(ready)
  return hs
end

if phase == "Unknown" then
  hs.status = "Unknown"
  hs.message = status.message or "The cloud returned a status code the operator does not know"
  return hs
end

hs.status = "Progressing"
hs.message = status.message or "Waiting for the relay to start"
return hs
