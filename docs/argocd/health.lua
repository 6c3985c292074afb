-- Argo CD health check for ocisync.io/Artifact.
-- Install it under the key resource.customizations.health.ocisync.io_Artifact
-- of the argocd-cm ConfigMap (docs/status-and-health.md shows how).
--
-- It reads the status as kstatus does, with one difference: a failure that
-- the controller retries (Ready=False with Reconciling=True) is Degraded
-- here, with the failure's reason and message, not Progressing, so that
-- Argo CD shows why the artifact is not synced. It turns Healthy by itself
-- once a retry succeeds.
--
-- Only Lua's base and table libraries are used: Argo CD opens no others
-- for scripts from argocd-cm.
local hs = {}

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true: nothing is synced, the output stays as it is"
  return hs
end

local ready, reconciling, stalled
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then
      ready = c
    elseif c.type == "Reconciling" then
      reconciling = c
    elseif c.type == "Stalled" then
      stalled = c
    end
  end
end

-- Conditions written for an older spec say nothing about this one.
local generation = tonumber(obj.metadata.generation)
local observed = 0
if obj.status ~= nil and obj.status.observedGeneration ~= nil then
  observed = tonumber(obj.status.observedGeneration) or 0
end
if generation ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "waiting for the controller to sync generation " .. generation
  if reconciling ~= nil and reconciling.status == "True" and reconciling.message ~= nil then
    hs.message = reconciling.message
  end
  return hs
end

local function describe(c)
  local reason = c.reason or "Unknown"
  if c.message == nil or c.message == "" then
    return reason
  end
  return reason .. ": " .. c.message
end

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled) .. " (stalled: fix the spec)"
  return hs
end

if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(ready)
  if reconciling ~= nil and reconciling.status == "True" then
    hs.message = hs.message .. " (retrying)"
  end
  return hs
end

if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = reconciling.message or "syncing"
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
  return hs
end

hs.status = "Progressing"
if ready ~= nil and ready.message ~= nil then
  hs.message = ready.message
else
  hs.message = "waiting for the controller to report the Ready condition"
end
return hs
