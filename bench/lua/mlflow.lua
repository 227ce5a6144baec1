-- Body: MLflow's scoring protocol with tensor input: {"inputs": [[...], ...]}.
local common = dofile((debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./") .. "common.lua")
common.install(function(rows) return '{"inputs": ' .. rows .. '}' end)
