-- Body: Open Inference Protocol v2 (MLServer): one FP64 tensor of shape [n, k], data flat.
local common = dofile((debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./") .. "common.lua")
common.install(function(rows)
  local n, k = 0, 0
  for row in rows:gmatch("%[([^%[%]]*)%]") do
    n = n + 1
    if n == 1 then
      for _ in row:gmatch("[^,]+") do k = k + 1 end
    end
  end
  local flat = rows:gsub("[%[%]]", "")
  return string.format(
    '{"inputs": [{"name": "input-0", "shape": [%d, %d], "datatype": "FP64", "data": [%s]}]}',
    n, k, flat)
end)
