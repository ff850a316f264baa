"""The Lua scripts the Redis store runs: each state change is one script, which Redis runs with nothing
interleaved across every connection of every instance (see `modelyard.store.redis` on atomicity).

Money never becomes a Lua number (Lua 5.1 has only doubles): amounts are exact decimal strings, added,
subtracted and compared by `DECIMAL` limb by limb in base 10^7, which every script is prefixed with.
"""

from __future__ import annotations

from typing import Final

__all__ = ["COMMIT", "DECIMAL", "RELEASE", "RENEW", "RESERVE", "TOTALS"]

DECIMAL: Final = """
local function parse(s, scale)
  local neg = s:sub(1, 1) == '-'
  if neg then s = s:sub(2) end
  local int, frac = s:match('^(%d*)%.?(%d*)$')
  local digits = int .. frac .. string.rep('0', scale - #frac)
  local limbs, n = {}, #digits
  while n > 0 do
    local lo = math.max(1, n - 6)
    limbs[#limbs + 1] = tonumber(digits:sub(lo, n))
    n = lo - 1
  end
  while #limbs > 0 and limbs[#limbs] == 0 do limbs[#limbs] = nil end
  return neg and #limbs > 0, limbs
end
local function cmpmag(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  for k = #a, 1, -1 do
    if a[k] ~= b[k] then return a[k] < b[k] and -1 or 1 end
  end
  return 0
end
local function addmag(a, b)
  local r, carry = {}, 0
  for k = 1, math.max(#a, #b) do
    local v = (a[k] or 0) + (b[k] or 0) + carry
    if v >= 10000000 then r[k] = v - 10000000; carry = 1 else r[k] = v; carry = 0 end
  end
  if carry > 0 then r[#r + 1] = carry end
  return r
end
local function submag(a, b)
  local r, borrow = {}, 0
  for k = 1, #a do
    local v = a[k] - (b[k] or 0) - borrow
    if v < 0 then r[k] = v + 10000000; borrow = 1 else r[k] = v; borrow = 0 end
  end
  while #r > 0 and r[#r] == 0 do r[#r] = nil end
  return r
end
local function render(neg, limbs, scale)
  if #limbs == 0 then return '0' end
  local parts = {tostring(limbs[#limbs])}
  for k = #limbs - 1, 1, -1 do parts[#parts + 1] = string.format('%07d', limbs[k]) end
  local digits = table.concat(parts)
  if #digits <= scale then digits = string.rep('0', scale - #digits + 1) .. digits end
  local int = digits:sub(1, #digits - scale)
  local frac = (digits:sub(#digits - scale + 1):gsub('0+$', ''))
  local text = int
  if frac ~= '' then text = int .. '.' .. frac end
  if neg then return '-' .. text end
  return text
end
local function scale_of(s)
  local frac = s:match('%.(%d+)$')
  if frac then return #frac end
  return 0
end
local function dec_add(x, y)
  local scale = math.max(scale_of(x), scale_of(y))
  local xn, xl = parse(x, scale)
  local yn, yl = parse(y, scale)
  if xn == yn then return render(xn, addmag(xl, yl), scale) end
  if cmpmag(xl, yl) >= 0 then return render(xn, submag(xl, yl), scale) end
  return render(yn, submag(yl, xl), scale)
end
local function dec_neg(x)
  if x:sub(1, 1) == '-' then return x:sub(2) end
  return '-' .. x
end
local function dec_gt(x, y)
  local d = dec_add(x, dec_neg(y))
  return d ~= '0' and d:sub(1, 1) ~= '-'
end
local function drop_hold(holds, amounts, held, id)
  local amount = redis.call('HGET', amounts, id)
  if amount then
    redis.call('HDEL', amounts, id)
    redis.call('ZREM', holds, id)
    redis.call('SET', held, dec_add(redis.call('GET', held) or '0', dec_neg(amount)))
  end
end
"""

# KEYS: holds, hold_amounts, held, day, month. ARGV: now, id, amount, expires_at, daily|'', monthly|''.
RESERVE: Final = """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for _, id in ipairs(expired) do drop_hold(KEYS[1], KEYS[2], KEYS[3], id) end
local held = redis.call('GET', KEYS[3]) or '0'
local day = redis.call('GET', KEYS[4]) or '0'
local month = redis.call('GET', KEYS[5]) or '0'
local after = dec_add(held, ARGV[3])
if ARGV[5] ~= '' and dec_gt(dec_add(day, after), ARGV[5]) then return {'daily', day, month, held} end
if ARGV[6] ~= '' and dec_gt(dec_add(month, after), ARGV[6]) then return {'monthly', day, month, held} end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('SET', KEYS[3], after)
return {'ok', day, month, held}
"""

# KEYS: holds, hold_amounts, held. ARGV: id.
RELEASE: Final = "drop_hold(KEYS[1], KEYS[2], KEYS[3], ARGV[1])\nreturn 1\n"

# KEYS: holds. ARGV: now, expires_at, id... Returns the ids renewed: those live at `now` (an expired hold the
# next reserve would purge is not revived), each pushed to expires_at, never earlier. Times are doubles, as
# the scores are; no amount is touched. Needs no DECIMAL prefix.
RENEW: Final = """
local now, later = tonumber(ARGV[1]), tonumber(ARGV[2])
local renewed = {}
for k = 3, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[k])
  if score and tonumber(score) > now then
    if tonumber(score) < later then redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[k]) end
    renewed[#renewed + 1] = ARGV[k]
  end
end
return renewed
"""

# KEYS: holds, hold_amounts, held, ledger, ledger_ts, ledger_seq, day, month.
# ARGV: reservation id|'', row id, row JSON, ts, cost|''.
COMMIT: Final = """
if ARGV[1] ~= '' then drop_hold(KEYS[1], KEYS[2], KEYS[3], ARGV[1]) end
if redis.call('HSETNX', KEYS[4], ARGV[2], ARGV[3]) == 0 then return 0 end
local seq = redis.call('INCR', KEYS[6])
redis.call('ZADD', KEYS[5], ARGV[4], string.format('%016d', seq) .. ':' .. ARGV[2])
if ARGV[5] ~= '' then
  for k = 7, 8 do redis.call('SET', KEYS[k], dec_add(redis.call('GET', KEYS[k]) or '0', ARGV[5])) end
end
return 1
"""

# KEYS: holds, hold_amounts, day, month. ARGV: now. Read-only: the live holds are those expiring after now.
TOTALS: Final = """
local total = '0'
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')) do
  local amount = redis.call('HGET', KEYS[2], id)
  if amount then total = dec_add(total, amount) end
end
return {redis.call('GET', KEYS[3]) or '0', redis.call('GET', KEYS[4]) or '0', total}
"""
