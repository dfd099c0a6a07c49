"""The Lua scripts of the Redis Cluster store (:mod:`papo.store_cluster`).

Redis Cluster runs a script on the shard of its keys and refuses one whose
keys lie in two hash slots, so each script here touches one slot only: a
conversation's (its tag, ``{r:#sala}`` or ``{d:@ana|beto}``), or a user's
(``{u:ana}``); every key is passed in ``KEYS``. What the single-Redis scripts
(:mod:`papo.redis_scripts`) do in one call across tags is done here by two
calls, one per slot, in the order that leaves a crash in between harmless
(see :mod:`papo.store_cluster_rooms`). The helpers of ``ROOMS_LIB`` (the
newest id of a stream, unread counts, room creation, change events on the
``{papo}:events`` channel, which Redis Cluster delivers to every node's
subscribers) are shared with the single-Redis scripts.
"""

from __future__ import annotations

from papo.redis_scripts import ROOMS_LIB, TRIM_LIB

# Append a batch of messages of conversations in ONE hash slot, giving each its
# id there (see papo.cluster_ids): id = T * 16384 + slot, T = max(last T + 1,
# the shard's clock in ms since the epoch, the stream's newest T + 1).
# KEYS: the slot's clock, then per message its stream, its rewritten set, its
# conversation's trim key, its cid key (the stream again when it has no cid).
# ARGV: retention, epoch (ms), slot, cid ttl, then per message: has cid (1/0),
# how many field strings, the fields. Returns new (1/0) and id per message.
# The trim key holds the oldest id the conversation keeps once its stream was
# trimmed (the `g` of the entry that trimmed it, as with one Redis).
APPEND = (
    TRIM_LIB
    + """
local retention, epoch, slot, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local last = tonumber(redis.call('GET', KEYS[1]) or 0)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - epoch
local out, k, i = {}, 2, 5
while i <= #ARGV do
  local stream, rewritten, trim, cid_key = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local has_cid, n = ARGV[i] == '1', tonumber(ARGV[i + 1])
  local earlier = has_cid and redis.call('GET', cid_key)
  if earlier then
    table.insert(out, 0)
    table.insert(out, tonumber(earlier))
  else
    local T = math.max(last + 1, now)
    local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
    if top[1] then
      local newest = tonumber(string.match(top[1][1], '%-(%d+)$'))
      T = math.max(T, math.floor(newest / 16384) + 1)
    end
    last = T
    local id = string.format('%d', T * 16384 + slot)
    local fields = {unpack(ARGV, i + 2, i + 1 + n)}
    local g = oldest_after_add(stream, retention)
    if g then
      if g == 0 then g = tonumber(id) end
      g = string.format('%d', g)
      table.insert(fields, 'g')
      table.insert(fields, g)
      redis.call('SET', trim, g)
      redis.call('ZREMRANGEBYSCORE', rewritten, '-inf', '(' .. g)
    end
    redis.call('XADD', stream, 'MAXLEN', retention, '0-' .. id, unpack(fields))
    if has_cid then redis.call('SET', cid_key, id, 'EX', ttl) end
    table.insert(out, 1)
    table.insert(out, tonumber(id))
  end
  k = k + 4
  i = i + 2 + n
end
redis.call('SET', KEYS[1], string.format('%d', last))
return out
"""
)

# What a reader needs to follow a conversation, read at one instant:
# KEYS: its stream, rewritten set, trim key. ARGV: how many recent entries.
# Returns {newest entries (newest first), newest rewritten members, trim ('' if none)}.
LOAD = """
local count = tonumber(ARGV[1])
return {
  redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', count),
  redis.call('ZREVRANGEBYSCORE', KEYS[2], '+inf', '-inf', 'LIMIT', 0, count),
  redis.call('GET', KEYS[3]) or '',
}
"""

# Create a room unless it exists. KEYS: its meta. ARGV: key, name, topic, by, created.
# Returns {created (1/0), name, topic, created_by, created}; the caller adds the key
# to {papo}:rooms (another slot).
CREATE_ROOM = (
    ROOMS_LIB
    + """
local made = ensure_meta(KEYS[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
local meta = redis.call('HMGET', KEYS[1], 'name', 'topic', 'created_by', 'created')
return {made, meta[1] or ARGV[2], meta[2] or '', meta[3] or '', meta[4] or '0'}
"""
)

# The room's half of a join. KEYS: members, stream. ARGV: instance, origin, token,
# room key, room name, user key, user name, announce (1: publish the join).
# Returns the read marker to give (the room's newest id), or -1 when already a member.
ROOM_JOIN = (
    ROOMS_LIB
    + """
if redis.call('HSETNX', KEYS[1], ARGV[6], ARGV[7]) == 0 then return -1 end
local last = newest(KEYS[2])
if ARGV[8] == '1' then event('join', ARGV[4], ARGV[5], ARGV[6], ARGV[7], '', last) end
return last
"""
)

# The room's half of a part. KEYS: members. ARGV as ROOM_JOIN (without announce).
# Returns 1 when the user was a member, else -1.
ROOM_PART = (
    ROOMS_LIB
    + """
if redis.call('HDEL', KEYS[1], ARGV[6]) == 0 then return -1 end
event('part', ARGV[4], ARGV[5], ARGV[6], ARGV[7], '', 0)
return 1
"""
)

# The user's half of a join or part. KEYS: the user's rooms, read markers.
# ARGV: 'join' or 'part', room key, read marker (-1: leave it as it is).
USER_ROOM = """
if ARGV[1] == 'join' then
  redis.call('SADD', KEYS[1], ARGV[2])
  if tonumber(ARGV[3]) >= 0 then redis.call('HSET', KEYS[2], ARGV[2], ARGV[3]) end
else
  redis.call('SREM', KEYS[1], ARGV[2])
  redis.call('HDEL', KEYS[2], ARGV[2])
end
return 1
"""

# A user's conversations at hello. KEYS: rooms, read markers, directs.
# ARGV: the default room, its newest id (-1: the user was a member already).
# Makes the default room one of the user's (again: a crash may have lost it).
# Returns {room keys, flat read markers, flat directs}.
USER_STATE = """
redis.call('SADD', KEYS[1], ARGV[1])
if tonumber(ARGV[2]) >= 0 then redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) end
return {redis.call('SMEMBERS', KEYS[1]), redis.call('HGETALL', KEYS[2]),
  redis.call('HGETALL', KEYS[3])}
"""

# One conversation's unread count. KEYS: its stream, its meta (a room's; for a direct
# conversation the stream again). ARGV: after, user key, cap.
# Returns {name, topic, unread} (name and topic empty for a direct conversation).
CONV_STATE = (
    ROOMS_LIB
    + """
local name, topic = '', ''
if KEYS[2] ~= KEYS[1] then
  local meta = redis.call('HMGET', KEYS[2], 'name', 'topic')
  if not meta[1] then return false end
  name, topic = meta[1], meta[2] or ''
end
return {name, topic, unread_in(KEYS[1], tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]))}
"""
)

# Move a read marker forward. KEYS: the user's read markers, directs. ARGV:
# instance, origin, token, user key, user name, conv, id, the room's name ('' for a
# direct conversation). Returns 1 when it moved, else 0.
SET_READ = (
    ROOMS_LIB
    + """
local key, name, conv, id = ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
if tonumber(redis.call('HGET', KEYS[1], conv) or 0) >= id then return 0 end
redis.call('HSET', KEYS[1], conv, ARGV[7])
local peer = ''
if string.sub(conv, 1, 1) == '@' then
  local v = redis.call('HGET', KEYS[2], conv)
  if v then peer = string.match(v, '\\t(.*)$') end
end
event('read', conv, ARGV[8], key, name, peer, id)
return 1
"""
)
