// The cluster decision, made atomically inside Redis (docs/cluster.md). One call per clustered upstream
// and sync: this replica's report goes in, the cluster's verdict comes out. Redis TIME is the only clock,
// so the replicas' clocks may disagree. O(replicas) per call.
//
// KEYS[1] reports  (hash: replica id -> "ms state calls failures slow")
// KEYS[2] verdict  (string: "state until_ms reason"; absent = closed; "recovered ..." for two leases
//                  after a recovery, so that every replica hears it and closes its own circuit)
// KEYS[3] lease    (string: the replica probing for the cluster; SET NX PX)
// ARGV: 1 replica id, 2 local state, 3 window calls, 4 failures, 5 slow calls, 6 probe outcome
//       (none|pending|success|failure; pending renews the holder's lease while its probe runs), 7 replica timeout ms, 8 quorum, 9
//       failure-rate threshold % (0 = off), 10 slow-call-rate threshold % (0 = off), 11 minimum calls, 12 open time ms, 13 lease
//       ms
// Returns: {verdict, ms left of it, live replicas, open replicas, calls, failures, redis ms, 1 when this
//           replica holds the lease, reason, 1 when the cluster just recovered}
//
// The rule (quorum N): the cluster opens when at least N live replicas are open themselves, or when the
// summed failure (or slow-call) rate over live replicas reaches its threshold with at least minimum calls
// and the failures come from at least N distinct replicas — one bad replica never opens the others.
// When the open time is over, the first replica to report takes the lease and probes; its outcome closes
// the circuit for all (recovered) or opens it again. A holder that vanishes lets its lease expire.
#pragma once
#include <string_view>

namespace breakerbox::cluster {

inline constexpr std::string_view cluster_script = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me, ttl, quorum = ARGV[1], tonumber(ARGV[7]), tonumber(ARGV[8])
local fthr, sthr, min_calls = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local open_ms, lease_ms = tonumber(ARGV[12]), tonumber(ARGV[13])
local state, until_ms, reason = 'closed', 0, ''
local v = redis.call('GET', KEYS[2])
if v then
  local a, b, c = string.match(v, '^(%S+) (%d+) ?(.*)$')
  if a then state, until_ms, reason = a, tonumber(b), c end
end
local recovered = 0
if state == 'recovered' then -- the fleet recovered a moment ago: every replica hears it, and forgets
  state, recovered = 'closed', 1
end
redis.call('HSET', KEYS[1], me, now .. ' ' .. ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. ARGV[5])
redis.call('PEXPIRE', KEYS[1], ttl * 4)
local fields = redis.call('HGETALL', KEYS[1])
-- A replica counts as failing only when its own rate reaches the threshold: one bad replica plus a
-- stray failure elsewhere is not a quorum. Failures and slow calls are counted apart.
local live, open, calls, fails, slow, failing, slowing = 0, 0, 0, 0, 0, 0, 0
for i = 1, #fields, 2 do
  local ts, st, c, f, s = string.match(fields[i + 1], '^(%d+) (%S+) (%d+) (%d+) (%d+)$')
  if ts == nil or now - tonumber(ts) > ttl or tonumber(ts) > now + ttl then
    redis.call('HDEL', KEYS[1], fields[i])
  else
    live = live + 1
    if st == 'open' then open = open + 1 end
    c, f, s = tonumber(c), tonumber(f), tonumber(s)
    calls, fails, slow = calls + c, fails + f, slow + s
    if c > 0 and fthr > 0 and f * 100 >= fthr * c then failing = failing + 1 end
    if c > 0 and sthr > 0 and s * 100 >= sthr * c then slowing = slowing + 1 end
  end
end
local function open_for_all(why)
  state, until_ms, reason, recovered = 'open', now + open_ms, why, 0
  redis.call('DEL', KEYS[3])
end
if state == 'closed' then -- (the reports of a recovered period were dropped: these are new)
  if open >= quorum then
    open_for_all(open .. ' of ' .. live .. ' replicas open (quorum ' .. quorum .. ')')
  elseif calls >= min_calls and failing >= quorum and fails * 100 >= fthr * calls then
    open_for_all('failure rate ' .. math.floor(fails * 1000 / calls) / 10 .. '% over ' .. live .. ' replicas, ' .. failing .. ' of them failing (quorum ' .. quorum .. ')')
  elseif calls >= min_calls and slowing >= quorum and slow * 100 >= sthr * calls then
    open_for_all('slow-call rate ' .. math.floor(slow * 1000 / calls) / 10 .. '% over ' .. live .. ' replicas, ' .. slowing .. ' of them slow (quorum ' .. quorum .. ')')
  end
elseif state == 'open' then
  until_ms = math.min(until_ms, now + open_ms) -- a Redis clock stepped back never lengthens it
  if now >= until_ms then state = 'half_open' end
end
local holder = 0
if state == 'half_open' then
  if redis.call('SET', KEYS[3], me, 'NX', 'PX', lease_ms) then
    holder = 1
  elseif redis.call('GET', KEYS[3]) == me then
    holder = 1
    if ARGV[6] == 'pending' then
      redis.call('PEXPIRE', KEYS[3], lease_ms)
    elseif ARGV[6] == 'success' then
      state, until_ms, reason, recovered = 'closed', 0, 'probe by ' .. me .. ' succeeded', 1
      redis.call('DEL', KEYS[3])
    elseif ARGV[6] == 'failure' then
      open_for_all('probe by ' .. me .. ' failed')
      holder = 0
    end
  end
  if state == 'half_open' then
    -- The holder's probe token lasts no longer than its lease.
    local left = holder == 1 and redis.call('PTTL', KEYS[3]) or lease_ms
    until_ms = now + math.max(left, 0)
  end
end
if state == 'closed' and recovered == 1 and v and string.sub(v, 1, 10) ~= 'recovered ' then
  -- Just recovered: the reports of the failing period are forgotten (they would open it again), and
  -- the news stays for two leases so that every replica hears it.
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], 'recovered ' .. now .. ' ' .. reason, 'PX', lease_ms * 2)
elseif state == 'closed' then
  if not (v and string.sub(v, 1, 10) == 'recovered ') then redis.call('DEL', KEYS[2]) end
elseif state ~= 'forced_open' and state ~= 'forced_closed' then
  redis.call('SET', KEYS[2], state .. ' ' .. until_ms .. ' ' .. reason, 'PX', math.max(until_ms - now, 0) + lease_ms * 2)
end
return {state, math.max(until_ms - now, 0), live, open, calls, fails, now, holder, reason, recovered}
)lua";

// An operator's cluster-wide action: KEYS[1] verdict, KEYS[2] lease, KEYS[3] reports; ARGV 1 state
// (forced_open, forced_closed, or reset), 2 ms it lasts (0 = until reset), 3 reason, 4 deadline (Redis
// ms): a command that arrives later is not applied ("late") — its sender has answered 503 already;
// 5 ms a reset is announced to the fleet (as "recovered").
inline constexpr std::string_view operator_script = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now > tonumber(ARGV[4]) then return 'late' end
redis.call('DEL', KEYS[2])
if ARGV[1] == 'reset' then
  redis.call('DEL', KEYS[3])
  redis.call('SET', KEYS[1], 'recovered ' .. now .. ' ' .. ARGV[3], 'PX', math.max(tonumber(ARGV[5]), 1))
  return 'closed'
end
local ms = tonumber(ARGV[2])
local until_ms = ms > 0 and (now + ms) or (now + 3153600000000)
if ms > 0 then
  redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. until_ms .. ' ' .. ARGV[3], 'PX', ms)
else
  redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. until_ms .. ' ' .. ARGV[3])
end
return ARGV[1]
)lua";

} // namespace breakerbox::cluster
