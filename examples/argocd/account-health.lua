-- Argo CD health check of mpurelay.io/MpuRelayAccount and ClusterMpuRelayAccount.
--   Healthy      Ready=True: tasks can call the cloud through the account
--   Degraded     Ready=False: the reason says why (EndpointNotAllowed, SecretInvalid, ...)
--   Progressing  not resolved yet, or the status describes an older generation
-- A Throttled=True account stays Healthy (the budget slows down and recovers by itself); the
-- message says so.
local hs = {}
local status = obj.status
local generation = obj.metadata and obj.metadata.generation
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to resolve the account"
  return hs
end
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "the operator has not resolved the latest spec yet"
  return hs
end
local ready, throttled
for _, c in ipairs(status.conditions) do
  if c.type == "Ready" then ready = c end
  if c.type == "Throttled" then throttled = c end
end
if ready == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to resolve the account"
elseif ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
  if throttled ~= nil and throttled.status == "True" then
    hs.message = "throttled: " .. (throttled.message or "")
  end
else
  hs.status = "Degraded"
  hs.message = (ready.reason or "") .. ": " .. (ready.message or "")
end
return hs
