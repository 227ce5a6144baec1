-- Body: BentoML's JSON for an API argument named "rows": {"rows": [[...], ...]}.
local common = dofile((debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./") .. "common.lua")
common.install(function(rows) return '{"rows": ' .. rows .. '}' end)
