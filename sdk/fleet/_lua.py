"""The Lua scripts that make each fleet operation one atomic step inside Redis.

Money is in integer nano-USD (no float drift); time is Redis' own clock (``TIME``), so hosts
with skewed clocks agree on windows and expiries. A reservation is a field of the account's
``holds`` hash (its amount) and a member of its ``expiry`` sorted set (scored by when it
expires); every script first releases expired holds, so a killed process's reservation is
returned by the next request after ``reservation_ttl_s``. A settled hold keeps a ``done``
marker until its expiry so a retried settlement is not charged twice.
"""

from __future__ import annotations

__all__ = ["ADMIT", "BALANCE", "BREAKER_SET", "POLL_BREAKERS", "SETTLE"]

_CLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_PURGE = """
local function purge(h, z, a)
  local dead = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  for _, rid in ipairs(dead) do
    local amt = redis.call('HGET', a, rid)
    if amt and amt ~= 'done' then redis.call('HINCRBY', h, 'reserved', -tonumber(amt)) end
    redis.call('HDEL', a, rid)
  end
  if #dead > 0 then redis.call('ZREMRANGEBYSCORE', z, '-inf', now) end
end
"""

# KEYS: rpm zset, tpm zset, then (account hash, expiry zset, holds hash) per money account.
# ARGV: id, want, minimum, ttl_ms, rpm (0 none), tpm (0 none), n, then (limit, keep_ms) each.
# Returns {0, amount} | {1, retry_ms} | {2, retry_ms} | {3, account index, spent, reserved}.
ADMIT = (
    _CLOCK
    + _PURGE
    + """
local id, want, minimum = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local ttl, rpm, tpm, n = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local window = 60000
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  local count = redis.call('ZCARD', KEYS[1])
  if count >= rpm then
    local first = redis.call('ZRANGE', KEYS[1], count - rpm, count - rpm, 'WITHSCORES')
    return {1, tonumber(first[2]) + window - now}
  end
end
if tpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  local total = 0
  for i = 1, #entries, 2 do total = total + tonumber(string.match(entries[i], ':(%d+)$')) end
  if total >= tpm then
    for i = 1, #entries, 2 do
      total = total - tonumber(string.match(entries[i], ':(%d+)$'))
      if total < tpm then return {2, tonumber(entries[i + 1]) + window - now} end
    end
  end
end
local amount = want
for i = 0, n - 1 do
  local h, z, a = KEYS[3 + 3 * i], KEYS[4 + 3 * i], KEYS[5 + 3 * i]
  purge(h, z, a)
  local held = redis.call('HMGET', h, 'spent', 'reserved')
  local spent, reserved = tonumber(held[1] or '0'), tonumber(held[2] or '0')
  local room = tonumber(ARGV[8 + 2 * i]) - spent - reserved
  if room < amount then amount = room end
  if amount < minimum then return {3, i + 1, spent, reserved} end
end
for i = 0, n - 1 do
  local h, z, a = KEYS[3 + 3 * i], KEYS[4 + 3 * i], KEYS[5 + 3 * i]
  redis.call('HINCRBY', h, 'reserved', amount)
  redis.call('HSET', a, id, amount)
  redis.call('ZADD', z, now + ttl, id)
  local keep = tonumber(ARGV[9 + 2 * i])
  if keep > 0 then
    redis.call('PEXPIRE', h, keep)
    redis.call('PEXPIRE', z, keep)
    redis.call('PEXPIRE', a, keep)
  end
end
if rpm > 0 then
  redis.call('ZADD', KEYS[1], now, id)
  redis.call('PEXPIRE', KEYS[1], window)
end
return {0, amount}
"""
)

# KEYS: tpm zset, then (account hash, expiry zset, holds hash) per money account.
# ARGV: id, reserved, actual, tokens, ttl_ms, n.  Returns the amount charged.
SETTLE = (
    _CLOCK
    + """
local id, reserved, actual = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens, ttl, n = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local charge = math.min(actual, reserved)
for i = 0, n - 1 do
  local h, z, a = KEYS[2 + 3 * i], KEYS[3 + 3 * i], KEYS[4 + 3 * i]
  local amt = redis.call('HGET', a, id)
  if amt == 'done' then return -1 end
  if amt then redis.call('HINCRBY', h, 'reserved', -tonumber(amt)) end
  redis.call('HINCRBY', h, 'spent', charge)
  redis.call('HSET', a, id, 'done')
  redis.call('ZADD', z, now + ttl, id)
end
if tokens > 0 then
  redis.call('ZADD', KEYS[1], now, id .. ':' .. tokens)
  redis.call('PEXPIRE', KEYS[1], 60000)
end
return charge
"""
)

# KEYS: account hash, expiry zset, holds hash.  Returns {spent, reserved}.
BALANCE = (
    _CLOCK
    + _PURGE
    + """
purge(KEYS[1], KEYS[2], KEYS[3])
return {tonumber(redis.call('HGET', KEYS[1], 'spent') or '0'),
        tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')}
"""
)

# KEYS: breaker hash, trial key.  ARGV: state ('open'|'closed'), cooldown_ms, error.
BREAKER_SET = (
    _CLOCK
    + """
if ARGV[1] == 'open' then
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', now + tonumber(ARGV[2]), 'error', ARGV[3])
else
  redis.call('HSET', KEYS[1], 'state', 'closed', 'until', 0)
end
redis.call('DEL', KEYS[2])
return 1
"""
)

# KEYS: (breaker hash, trial key) per backend.  ARGV: this process's id, trial lease (ms).
# Returns a flat list of (verdict, ms, error): closed | open (ms until a trial) | trial (ours).
POLL_BREAKERS = (
    _CLOCK
    + """
local out = {}
for i = 1, #KEYS, 2 do
  local st = redis.call('HMGET', KEYS[i], 'state', 'until', 'error')
  local err = st[3] or ''
  if st[1] ~= 'open' then
    table.insert(out, 'closed'); table.insert(out, 0); table.insert(out, '')
  elseif now < tonumber(st[2]) then
    table.insert(out, 'open'); table.insert(out, tonumber(st[2]) - now); table.insert(out, err)
  else
    redis.call('SET', KEYS[i + 1], ARGV[1], 'NX', 'PX', ARGV[2])
    if redis.call('GET', KEYS[i + 1]) == ARGV[1] then
      table.insert(out, 'trial'); table.insert(out, 0); table.insert(out, err)
    else
      table.insert(out, 'open'); table.insert(out, redis.call('PTTL', KEYS[i + 1]))
      table.insert(out, err)
    end
  end
end
return out
"""
)
