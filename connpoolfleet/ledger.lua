-- The ledger of one budget: every change of state is one run of this script,
-- timed by Redis's own clock. See doc.go for the safety argument; the share
-- computation mirrors internal/share (Level, Target), which has the tests.
--
-- KEYS[1]  the budget's prefix, "{name}" (one hash tag: one cluster slot)
-- ARGV     op ("renew" | "leave" | "budget"), id, budget, ttl ms, floor,
--          safe share, reserve hold ms, demand, used (open + dialing),
--          hold (the caps the member may use now, 0 if it never had a
--          grant), level interval ms, damping, seq (grows with every
--          renew of the member: a renew that arrives after a later one is
--          stale and changes nothing), conn (the name of the member's own
--          connection to Redis, "" if it has none), then for a renew, id
--          and seq pairs of held members whose connections the caller
--          found gone (CLIENT LIST), to release
--
-- Keys: p:s hash (epoch, budget, granted = sum of grants and reserves,
-- floors = sum of seated members' floors, learn = end of the learning
-- period, level, next = when the level is due, held = members in p:h, so
-- that a renew touches p:h only when it has some, chk = when the next check
-- of held members is due); p:l zset of live leases by
-- expiry; p:h zset of held members (lease ended, but a connection named
-- after them may be open: the process may be stopped, not dead) by when to
-- check them next; p:g zset of reserves (expired or left members) by
-- expiry; p:d zset of seated members by excess demand; p:m:<id> hash per
-- member.
local p = KEYS[1]
local S, L, H, G, D = p .. ':s', p .. ':l', p .. ':h', p .. ':g', p .. ':d'
local op, id = ARGV[1], ARGV[2]
local cfgBudget, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local floor, safe, hold = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local demand, used, held = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local interval, damping, seq = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local conn = ARGV[14] or ''
local M = p .. ':m:' .. id

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local keep = 4 * (ttl + hold) + 4 * interval

-- A missing state hash is a new ledger or a lost one: a new epoch, which
-- starts with a learning period of one TTL.
if redis.call('EXISTS', S) == 0 then
	redis.call('DEL', L, H, G, D)
	redis.call('HSET', S, 'epoch', t[1] .. '.' .. t[2], 'budget', cfgBudget, 'granted', 0,
		'floors', 0, 'learn', now + ttl, 'level', -1, 'next', 0, 'held', 0)
end
local st = redis.call('HMGET', S, 'epoch', 'budget', 'granted', 'floors', 'learn', 'level', 'next', 'held', 'chk')
local epoch, budget, granted, floors = st[1], tonumber(st[2]), tonumber(st[3]), tonumber(st[4])
local learn, level, nextLevel = tonumber(st[5]), tonumber(st[6]), tonumber(st[7])
local nheld, nextCheck = tonumber(st[8]) or 0, tonumber(st[9]) or 0
local learning = now < learn

-- release ends member x's lease: its grant above its safe share returns at
-- once, its safe share is reserved for the reserve hold.
local function release(x)
	local mk = p .. ':m:' .. x
	local m = redis.call('HMGET', mk, 'grant', 'safe', 'floor', 'seated', 'debt')
	local g = (tonumber(m[1]) or 0) + (tonumber(m[5]) or 0)
	local r = math.min(g, tonumber(m[2]) or 0)
	granted = granted - (g - r)
	if m[4] == '1' then floors = floors - (tonumber(m[3]) or 0) end
	redis.call('ZREM', L, x)
	if nheld > 0 and redis.call('ZREM', H, x) == 1 then nheld = nheld - 1 end
	redis.call('ZREM', D, x)
	redis.call('HSET', mk, 'grant', 0, 'debt', 0, 'reserve', r, 'seated', 0, 'target', 0)
	redis.call('PEXPIRE', mk, keep)
	redis.call('ZADD', G, now + hold, x)
end

-- Expire a few leases and reserves per call: amortized over the calls. A
-- member with a named connection is not released but held: a stopped
-- process keeps its sockets open, its conns at the server and its
-- connection to Redis alike, so its grant stays counted until a member
-- checks that its connection is gone.
for _, x in ipairs(redis.call('ZRANGEBYSCORE', L, '-inf', now, 'LIMIT', 0, 8)) do
	local c = redis.call('HGET', p .. ':m:' .. x, 'conn')
	if c and c ~= '' then
		redis.call('ZREM', L, x)
		if redis.call('ZADD', H, now, x) == 1 then nheld = nheld + 1 end
	else
		release(x)
	end
end
for _, x in ipairs(redis.call('ZRANGEBYSCORE', G, '-inf', now, 'LIMIT', 0, 8)) do
	local mk = p .. ':m:' .. x
	granted = granted - (tonumber(redis.call('HGET', mk, 'reserve')) or 0)
	redis.call('ZREM', G, x)
	redis.call('DEL', mk)
end

-- Release the held members the caller found gone, if they have not
-- renewed since it was told of them (their seq is unchanged).
if op == 'renew' and nheld > 0 then
	for i = 15, #ARGV - 1, 2 do
		local x = ARGV[i]
		if redis.call('ZSCORE', H, x) and redis.call('HGET', p .. ':m:' .. x, 'seq') == ARGV[i + 1] then
			release(x)
		end
	end
end

-- Every half interval, tell a caller that can check connections (it has
-- one of its own) of the held members due for a check (up to 64): at most
-- two CLIENT LIST per interval for the whole fleet, however many members
-- are held. Each is due again half an interval later, so a check that was
-- lost (the caller stopped, say) is made by another. A caller that cannot
-- check leaves the check to another, and only keeps their hashes from
-- expiring, so that a held grant stays known until one comes.
local check = {}
if op == 'renew' and nheld > 0 and now >= nextCheck then
	if conn ~= '' then nextCheck = now + math.floor(interval / 2) end
	for _, x in ipairs(redis.call('ZRANGEBYSCORE', H, '-inf', now, 'LIMIT', 0, 64)) do
		local mk = p .. ':m:' .. x
		if conn ~= '' and x ~= id then
			local c = redis.call('HMGET', mk, 'conn', 'seq')
			check[#check + 1] = x
			check[#check + 1] = c[1] or ''
			check[#check + 1] = c[2] or ''
			redis.call('ZADD', H, nextCheck, x)
		end
		redis.call('PEXPIRE', mk, keep)
	end
end

-- detach takes a member of this epoch out of every sum.
local function detach(m)
	granted = granted - (tonumber(m[2]) or 0) - (tonumber(m[8]) or 0)
	if redis.call('ZSCORE', G, id) then
		granted = granted - (tonumber(m[5]) or 0)
		redis.call('ZREM', G, id)
	end
	if m[4] == '1' then floors = floors - (tonumber(m[6]) or 0) end
	redis.call('ZREM', L, id)
	if nheld > 0 and redis.call('ZREM', H, id) == 1 then nheld = nheld - 1 end
	redis.call('ZREM', D, id)
end

local function save()
	redis.call('HSET', S, 'budget', budget, 'granted', granted, 'floors', floors, 'level', level, 'next', nextLevel, 'held', nheld, 'chk', nextCheck)
	for _, k in ipairs({ S, L, G, D }) do redis.call('PEXPIRE', k, keep) end
	if nheld > 0 then redis.call('PEXPIRE', H, keep) end
end

local m = redis.call('HMGET', M, 'epoch', 'grant', 'target', 'seated', 'reserve', 'floor', 'seq', 'debt')
local known = m[1] == epoch

if op == 'budget' then
	budget = cfgBudget
	nextLevel = 0
	save()
	return { 0, 0, epoch, budget, learning and 1 or 0, 0, now }
end

if op == 'leave' then
	if known then
		detach(m)
		local r = math.min(used, (tonumber(m[2]) or 0) + (tonumber(m[8]) or 0))
		if r > 0 then
			granted = granted + r
			redis.call('HSET', M, 'grant', 0, 'debt', 0, 'reserve', r, 'seated', 0, 'target', 0)
			redis.call('PEXPIRE', M, keep)
			redis.call('ZADD', G, now + ttl, id)
		else
			redis.call('DEL', M)
		end
	end
	save()
	return { 0, 0, epoch, budget, learning and 1 or 0, 0, now }
end

-- renew
if known and (tonumber(m[7]) or 0) > seq then
	-- Sent before a renew already applied (it waited in a socket while
	-- Redis was paused, say): its report is stale, so it changes nothing.
	save()
	return { tonumber(m[2]) or 0, tonumber(m[3]) or 0, epoch, budget, learning and 1 or 0, m[4] == '1' and 1 or 0, now, 1, check }
end
local grant, target, seated, debt
if known and redis.call('ZSCORE', L, id) then
	grant, target, seated = tonumber(m[2]), tonumber(m[3]), m[4] == '1'
	floor, debt = tonumber(m[6]), tonumber(m[8]) or 0
elseif known and nheld > 0 and redis.call('ZREM', H, id) == 1 then
	nheld = nheld - 1
	-- Held past its lease (stopped, or its renews failed while its
	-- connection stayed open): its grant was counted all along, so it
	-- renews onto it as if its lease had not ended.
	grant, target, seated = tonumber(m[2]), tonumber(m[3]), m[4] == '1'
	floor, debt = tonumber(m[6]), tonumber(m[8]) or 0
else
	-- New, back from a lapse (its reserve held), or from a lost epoch: it
	-- may be using its caps and its open conns. All of it is counted; in
	-- the learning period it was granted and is kept, otherwise it may use
	-- only what fits (its reserve, given back by detach, and the room):
	-- the rest is debt, counted until those conns are closed.
	if known then detach(m) end
	local claim = math.max(held, used)
	local allowed = claim
	if not learning then allowed = math.min(claim, math.max(0, budget - granted)) end
	grant, target, seated, debt = allowed, allowed, false, claim - allowed
	granted = granted + claim
	if claim > 0 then
		seated = true
		floors = floors + floor
	end
end
if not seated and not learning and floors + floor <= budget then
	seated = true
	floors = floors + floor
end

local excess = math.max(0, math.ceil(demand - 0.01) - floor)
if seated then
	redis.call('ZADD', D, excess, id)
else
	redis.call('ZREM', D, id)
end

-- The water level, at most once per interval for the whole fleet.
if now >= nextLevel then
	local z = redis.call('ZRANGE', D, 0, -1, 'WITHSCORES')
	local n = #z / 2
	local rest = budget - floors
	level = -1
	if rest <= 0 then
		level = 0
	else
		for i = 1, n do
			local e, k = tonumber(z[2 * i]), n - i + 1
			if e * k > rest then
				level = rest / k
				break
			end
			rest = rest - e
		end
	end
	nextLevel = now + interval
end

local nt = 0
if seated then
	local x = excess
	if level >= 0 and x > level then x = level end
	nt = floor + math.floor(x + 1e-9)
	-- Damping: a small fall is held back while there is room for others
	-- (none is then waiting on it); a rise is taken at once.
	if nt < target and target - nt <= damping and target <= floor + excess + damping and granted < budget then nt = target end
end
target = nt

-- A grant falls only to what the member may still be using, and rises only
-- into room, never while learning.
if grant > target then
	local k = math.max(target, held, math.min(used, grant))
	if k < grant then
		granted = granted - (grant - k)
		grant = k
	end
end
if debt > 0 then
	local d = math.max(0, math.min(debt, used - grant))
	granted = granted - (debt - d)
	debt = d
end
if target > grant and not learning and budget - granted > 0 then
	local inc = math.min(budget - granted, target - grant)
	grant = grant + inc
	granted = granted + inc
end

redis.call('ZADD', L, now + ttl, id)
redis.call('HSET', M, 'epoch', epoch, 'grant', grant, 'target', target, 'seated', seated and 1 or 0,
	'floor', floor, 'safe', safe, 'reserve', 0, 'debt', debt, 'seq', ARGV[13], 'conn', conn)
redis.call('PEXPIRE', M, keep)
save()
return { grant, target, epoch, budget, learning and 1 or 0, seated and 1 or 0, now, 0, check }
