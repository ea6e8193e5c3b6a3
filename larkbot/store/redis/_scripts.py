"""The Lua scripts that make each step atomic: intake, leases, claim, read, finish, limits.

Every script touches the keys of one partition only (or one user's limit, or the member
set), so it runs in one Redis Cluster slot. Scripts that act on a partition's stream
first check the lease against ``owner|epoch`` (the fencing token): an owner whose lease
has passed to another replica (a pause longer than the lease, a network split) can
neither read, claim nor finish, so it never writes stale state.

Redis runs a script to completion before any other command, and with AOF the script's
effects are logged as one unit, which is what "atomic" means below.
"""

from __future__ import annotations

__all__ = [
    "CLAIM",
    "CONFIRMATION_MOVE",
    "FINISH",
    "HEARTBEAT",
    "INTAKE",
    "LEASE",
    "MAX_EPOCH",
    "PUT_ANSWER",
    "PUT_STREAMED_CARD",
    "RATE_LIMIT",
    "READ",
    "RELEASE",
]

# INTAKE: mark the message seen and append it to the partition's stream, or report a
# duplicate. KEYS: seen, in. ARGV: seen ttl ms, message id, message JSON.
# Returns the new entry id, or false for a duplicate.
INTAKE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  return false
end
return redis.call('XADD', KEYS[2], '*', 'id', ARGV[2], 'm', ARGV[3])
"""

# LEASE: acquire or renew a partition's lease. KEYS: lease, epoch. ARGV: owner, epoch the
# caller believes it holds (0: none), ttl ms.
# Returns {epoch, 0} when renewed, {epoch, 1} when newly acquired (a new fencing token),
# {0, holder} when another owner holds it. A lease already held by this owner under
# another epoch (a reply lost to a timeout) is taken again with a new epoch, which fences
# whatever the caller might still run under the old one.
LEASE = """
local mine = ARGV[1] .. '|' .. ARGV[2]
local current = redis.call('GET', KEYS[1])
if current == mine then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {tonumber(ARGV[2]), 0}
end
if current and string.sub(current, 1, #ARGV[1] + 1) ~= ARGV[1] .. '|' then
  return {0, current}
end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. epoch, 'PX', ARGV[3])
return {epoch, 1}
"""

# RELEASE: give a lease up if it is still ours. KEYS: lease. ARGV: owner|epoch.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# CLAIM: on taking a partition, move every pending entry of earlier owners to us, oldest
# first, without counting a delivery (READ counts it when it hands the entry out).
# KEYS: lease, in. ARGV: owner|epoch, group, consumer, start id, count.
# Returns {next start id ('0-0' when done), claimed}, or {-1} when the lease is not ours.
# Once everything is claimed, consumers left with nothing pending are deleted so the
# group does not collect one consumer per replica that ever lived; no other consumer can
# gain entries meanwhile, because READ is fenced by the lease we hold.
CLAIM = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {-1}
end
local made = redis.pcall('XGROUP', 'CREATE', KEYS[2], ARGV[2], '0', 'MKSTREAM')
if type(made) == 'table' and made.err and not string.find(made.err, 'BUSYGROUP') then
  return redis.error_reply(made.err)
end
local claimed = redis.call('XAUTOCLAIM', KEYS[2], ARGV[2], ARGV[3], 0, ARGV[4],
  'COUNT', ARGV[5], 'JUSTID')
local next_id = claimed[1]
if next_id == '0-0' then
  local consumers = redis.call('XINFO', 'CONSUMERS', KEYS[2], ARGV[2])
  for _, consumer in ipairs(consumers) do
    local name, pending
    for i = 1, #consumer, 2 do
      if consumer[i] == 'name' then name = consumer[i + 1] end
      if consumer[i] == 'pending' then pending = consumer[i + 1] end
    end
    if name ~= ARGV[3] and pending == 0 then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[2], ARGV[2], name)
    end
  end
end
return {next_id, #claimed[2]}
"""

# READ: hand out the next entries of a partition to its owner, in stream order.
# KEYS: lease, in, dlq. ARGV: owner|epoch, group, consumer, cursor, count, max deliveries.
# First our own pending entries after ``cursor`` (claimed from a dead owner, or delivered
# by a call whose reply was lost), then new ones ('>'). Reading history again is what makes
# a retried READ harmless: nothing delivered is ever stranded.
# Returns {-1} when the lease is not ours, else {last id, entries, dead} where entries and
# dead are flat lists of (entry id, message id, message JSON, deliveries). An entry
# delivered more than ``max deliveries`` times moves to the dead-letter stream (and leaves
# the input stream) instead of being handed out again.
READ = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {-1}
end
local function read(from)
  return redis.pcall('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[5],
    'STREAMS', KEYS[2], from)
end
local reply = read(ARGV[4])
if type(reply) == 'table' and reply.err then
  if not string.find(reply.err, 'NOGROUP') then
    return redis.error_reply(reply.err)
  end
  redis.call('XGROUP', 'CREATE', KEYS[2], ARGV[2], '0', 'MKSTREAM')
  reply = read(ARGV[4])
end
local entries = (reply and reply[1] and reply[1][2]) or {}
local history = #entries > 0
if not history then
  reply = read('>')
  entries = (reply and reply[1] and reply[1][2]) or {}
end
local counts = {}
if history then
  local first = entries[1][1]
  local last = entries[#entries][1]
  local pending = redis.call('XPENDING', KEYS[2], ARGV[2], first, last, #entries, ARGV[3])
  for _, p in ipairs(pending) do counts[p[1]] = p[4] end
end
local limit = tonumber(ARGV[6])
local out, dead, last_id = {}, {}, ARGV[4]
for _, entry in ipairs(entries) do
  local id, fields = entry[1], entry[2]
  last_id = id
  if not fields then
    -- deleted from the stream while pending: nothing left to answer
    redis.call('XACK', KEYS[2], ARGV[2], id)
  else
    local message_id, payload
    for i = 1, #fields, 2 do
      if fields[i] == 'id' then message_id = fields[i + 1] end
      if fields[i] == 'm' then payload = fields[i + 1] end
    end
    local deliveries = counts[id] or 1
    if deliveries > limit then
      redis.call('XADD', KEYS[3], 'MAXLEN', '~', 10000, '*', 'id', message_id, 'm', payload,
        'entry', id, 'deliveries', deliveries)
      redis.call('XACK', KEYS[2], ARGV[2], id)
      redis.call('XDEL', KEYS[2], id)
      table.insert(dead, id); table.insert(dead, message_id)
      table.insert(dead, payload); table.insert(dead, deliveries)
    else
      table.insert(out, id); table.insert(out, message_id)
      table.insert(out, payload); table.insert(out, deliveries)
    end
  end
end
return {last_id, out, dead}
"""

# FINISH: the fenced end of an answer. KEYS: lease, in, conv, convmeta, then per message
# (done, out). ARGV: owner|epoch, group, max turns, conversation ttl ms, done ttl ms,
# language and profile (each '' keeps it, '=value' sets it, '-' clears it), reset ('1'
# empties the history first: the ``reset`` command), turn count n, n turn JSONs, then one
# entry id per message. Returns 1 when applied, 2 when the last message was already done
# (a retried call: nothing is appended twice), 0 when the lease is not ours (nothing done).
FINISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local turns = tonumber(ARGV[9])
local first_entry = 10 + turns
local messages = #ARGV - first_entry + 1
local last_done = KEYS[4 + 2 * messages - 1]
local result = 1
if redis.call('EXISTS', last_done) == 1 then
  result = 2
else
  local ttl = ARGV[4]
  if ARGV[8] == '1' then
    redis.call('DEL', KEYS[3])
  end
  if turns > 0 then
    redis.call('RPUSH', KEYS[3], unpack(ARGV, 10, 9 + turns))
    redis.call('LTRIM', KEYS[3], -tonumber(ARGV[3]), -1)
    redis.call('PEXPIRE', KEYS[3], ttl)
  end
  for i, field in ipairs({'language', 'profile'}) do
    local change = ARGV[5 + i]
    if change == '-' then
      redis.call('HDEL', KEYS[4], field)
    elseif change ~= '' then
      redis.call('HSET', KEYS[4], field, string.sub(change, 2))
    end
  end
  redis.call('PEXPIRE', KEYS[4], ttl)  -- a no-op while there is no language or profile
end
for i = 1, messages do
  local id = ARGV[first_entry + i - 1]
  if result == 1 then
    redis.call('SET', KEYS[4 + 2 * i - 1], '1', 'PX', ARGV[5])
  end
  redis.call('DEL', KEYS[4 + 2 * i])
  redis.call('XACK', KEYS[2], ARGV[2], id)
  redis.call('XDEL', KEYS[2], id)
end
return result
"""

# PUT_ANSWER: keep the first answer generated for a message. KEYS: out. ARGV: answer JSON,
# ttl ms. Returns the answer that counts: the one already stored, or ARGV[1].
# (A script rather than SET NX GET, which needs Redis 7.0; this works from 6.2.)
PUT_ANSWER = """
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"""

# PUT_STREAMED_CARD: keep the streamed card of an answer, if the lease is still ours, so a
# replica paused past its lease can never raise the sequence ceiling its successor reads.
# KEYS: lease, card. ARGV: token (owner|epoch), card JSON, ttl ms. Returns 1 when kept.
PUT_STREAMED_CARD = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
"""

# RATE_LIMIT: a sliding window on Redis' clock, the same rule as the in-process
# RateLimiter: at most ``limit`` calls in any ``window`` ms; a refused call is not counted.
# KEYS: window (ZSET). ARGV: limit, window ms, unique call id.
# Returns {1, 0, remaining} when allowed, {0, retry after ms, 0} when not.
RATE_LIMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
local limit = tonumber(ARGV[1])
if used < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, 0, limit - used - 1}
end
local oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
return {0, math.max(oldest + window - now, 1), 0}
"""

# CONFIRMATION_MOVE: move a write confirmation on if its state is still the one the caller
# read. KEYS: state. ARGV: the state value read ('' when there was none: pending), the new
# value, ttl ms. Returns 1 when moved. (SET NX covers the first move only; taking over an
# attempt, and settling only the current attempt, compare the whole value.)
CONFIRMATION_MOVE = """
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

# HEARTBEAT: say this replica is alive until now + ttl, drop the expired, list the live.
# KEYS: members. ARGV: owner, ttl ms ('0' leaves the set). Returns the live owners.
HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(ARGV[2]) > 0 then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

# MAX_EPOCH: restore a fencing counter without ever moving it backwards.
# KEYS: epoch. ARGV: value. Returns the counter's value afterwards.
MAX_EPOCH = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local value = tonumber(ARGV[1])
if value > current then
  redis.call('SET', KEYS[1], value)
  return value
end
return current
"""
