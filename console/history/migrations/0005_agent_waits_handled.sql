-- The two figures of a report by agent that do not add up, kept so that a month
-- reads a few thousand rows instead of every answered call and every leg
-- (docs/history.md, reports; bench/RESULTS.md, issue 17):
--
-- call_wait_days: per agent and UTC day of arrival, the waits of the calls the agent
-- answered (offered inbound calls with a wait_ms), sorted. A report finds the exact
-- nearest-rank 90th percentile of a range's days by merging only the waits between
-- the days' own 90th percentiles, and counts those within the threshold by binary
-- search (width_bucket). Kept by statement triggers on calls, like call_days.
--
-- handled_pairs / handled_quarters / handled_days / handled_spread: calls handled is
-- the number of distinct calls an agent joined as an agent (role 'agent') in a range.
-- handled_pairs holds, per (call, agent), the distinct UTC quarter hours its legs
-- joined in; handled_quarters and handled_days count, per agent and quarter / day,
-- the pairs with a leg in it; handled_spread lists the quarters of the few pairs
-- whose legs fall in more than one quarter, so that a report can take away what
-- the sums count twice. Recounted from the table, for each call whose legs a
-- transaction changed, at its commit (a statement trigger notes the calls in
-- handled_dirty, a deferred one recounts them): the writer deletes and re-inserts a
-- call's legs, one statement a leg (console/history/store.py), so a statement alone
-- does not show what changed, and a rewrite that changes nothing moves nothing.
--
-- Both move their totals under the calls' totals lock (22338, 0) of migration 0003,
-- taken only when something moves.

CREATE TABLE call_wait_days (
  day bigint NOT NULL,                       -- ms of a UTC midnight
  agent text NOT NULL,                       -- answered_by
  waits bigint[] NOT NULL,                   -- ascending, no NULL
  PRIMARY KEY (day, agent)
);

-- ``kept`` with ``vals[i]`` added ``counts[i]`` times (taken away when negative), in
-- its place (width_bucket: how many are <= it); a wait moves one or two at a time.
CREATE FUNCTION call_waits_merge(kept bigint[], vals bigint[], counts bigint[])
RETURNS bigint[] LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  result bigint[] := COALESCE(kept, '{}');
  i int;
  k int;
  n bigint;
BEGIN
  FOR i IN 1 .. COALESCE(cardinality(vals), 0) LOOP
    n := counts[i];
    WHILE n > 0 LOOP
      k := width_bucket(vals[i], result);
      result := result[1:k] || vals[i] || result[k + 1:];
      n := n - 1;
    END LOOP;
    WHILE n < 0 LOOP
      k := width_bucket(vals[i], result);
      IF k > 0 AND result[k] = vals[i] THEN
        result := result[1:k - 1] || result[k + 1:];
      END IF;
      n := n + 1;
    END LOOP;
  END LOOP;
  RETURN result;
END
$$;

-- Move the kept waits by (agent, arrival, wait, +1 / -1) of the counted rows.
CREATE FUNCTION call_waits_move(p_agent text[], p_arrived bigint[], p_wait bigint[],
                                p_sign bigint[])
RETURNS void LANGUAGE plpgsql SET jit = off AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM unnest(p_agent, p_arrived, p_wait, p_sign) AS m(a, t, w, s)
                 GROUP BY a, t - mod(t, 86400000), w HAVING sum(s) <> 0) THEN
    RETURN;
  END IF;
  PERFORM pg_advisory_xact_lock(22338, 0);  -- the calls' totals (0003)
  -- from here each statement sees every change committed before the lock was granted
  INSERT INTO call_wait_days AS t (day, agent, waits)
  SELECT m.day, m.agent, call_waits_merge(k.waits, m.vals, m.counts)
  FROM (
    SELECT day, agent, array_agg(w) AS vals, array_agg(n) AS counts
    FROM (SELECT t - mod(t, 86400000) AS day, a AS agent, w, sum(s)::bigint AS n
          FROM unnest(p_agent, p_arrived, p_wait, p_sign) AS m(a, t, w, s)
          GROUP BY 1, 2, 3 HAVING sum(s) <> 0) x
    GROUP BY day, agent
  ) m
  LEFT JOIN call_wait_days k ON k.day = m.day AND k.agent = m.agent
  ORDER BY m.day, m.agent
  ON CONFLICT (day, agent) DO UPDATE SET waits = EXCLUDED.waits;
END
$$;

-- What counts: an offered inbound call answered by someone, with its wait (as the
-- report's _ANSWERED, per answered_by).
CREATE FUNCTION call_waits_after_change() RETURNS trigger LANGUAGE plpgsql SET jit = off AS $$
DECLARE
  agents text[];
  arrived bigint[];
  waits bigint[];
  signs bigint[];
BEGIN
  IF TG_OP = 'INSERT' THEN
    SELECT array_agg(answered_by), array_agg(arrived_at), array_agg(wait_ms), array_agg(1::bigint)
    INTO agents, arrived, waits, signs
    FROM new_calls
    WHERE kind = 'inbound' AND offered AND answered_at IS NOT NULL AND answered_by IS NOT NULL
      AND wait_ms IS NOT NULL;
  ELSIF TG_OP = 'DELETE' THEN
    SELECT array_agg(answered_by), array_agg(arrived_at), array_agg(wait_ms), array_agg(-1::bigint)
    INTO agents, arrived, waits, signs
    FROM old_calls
    WHERE kind = 'inbound' AND offered AND answered_at IS NOT NULL AND answered_by IS NOT NULL
      AND wait_ms IS NOT NULL;
  ELSE
    SELECT array_agg(answered_by), array_agg(arrived_at), array_agg(wait_ms), array_agg(s)
    INTO agents, arrived, waits, signs
    FROM (SELECT -1::bigint AS s, kind, offered, answered_at, answered_by, arrived_at, wait_ms
          FROM old_calls
          UNION ALL
          SELECT 1, kind, offered, answered_at, answered_by, arrived_at, wait_ms
          FROM new_calls) c
    WHERE kind = 'inbound' AND offered AND answered_at IS NOT NULL AND answered_by IS NOT NULL
      AND wait_ms IS NOT NULL;
  END IF;
  IF agents IS NOT NULL THEN
    PERFORM call_waits_move(agents, arrived, waits, signs);
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER calls_waits_insert AFTER INSERT ON calls REFERENCING NEW TABLE AS new_calls
  FOR EACH STATEMENT EXECUTE FUNCTION call_waits_after_change();
CREATE TRIGGER calls_waits_update AFTER UPDATE ON calls
  REFERENCING OLD TABLE AS old_calls NEW TABLE AS new_calls
  FOR EACH STATEMENT EXECUTE FUNCTION call_waits_after_change();
CREATE TRIGGER calls_waits_delete AFTER DELETE ON calls REFERENCING OLD TABLE AS old_calls
  FOR EACH STATEMENT EXECUTE FUNCTION call_waits_after_change();

-- the calls already stored
SELECT call_waits_move(array_agg(answered_by), array_agg(arrived_at), array_agg(wait_ms),
                       array_agg(1::bigint))
FROM calls
WHERE kind = 'inbound' AND offered AND answered_at IS NOT NULL AND answered_by IS NOT NULL
  AND wait_ms IS NOT NULL;

CREATE TABLE handled_pairs (
  call_id text NOT NULL,
  agent text NOT NULL,
  quarters bigint[] NOT NULL,                -- ascending, distinct: its legs' quarter hours
  PRIMARY KEY (call_id, agent)
);
CREATE TABLE handled_quarters (
  quarter bigint NOT NULL,                   -- ms of a UTC quarter hour's start
  agent text NOT NULL,
  pairs bigint NOT NULL,                     -- calls the agent joined in it
  PRIMARY KEY (quarter, agent)
);
CREATE TABLE handled_days (
  day bigint NOT NULL,                       -- ms of a UTC midnight
  agent text NOT NULL,
  pairs bigint NOT NULL,
  PRIMARY KEY (day, agent)
);
CREATE TABLE handled_spread (
  quarter bigint NOT NULL,
  agent text NOT NULL,
  call_id text NOT NULL,
  PRIMARY KEY (quarter, agent, call_id)
);

-- The quarters of each (call, agent) pair's legs as stored now (NULL: none). The
-- legs are found by call alone (the primary key): a condition on role or agent
-- there can lead the planner to AND in call_legs_handled, a scan of every leg.
CREATE FUNCTION handled_fresh(p_call text[], p_agent text[])
RETURNS TABLE (call_id text, agent text, quarters bigint[]) LANGUAGE sql STABLE AS $$
  SELECT p.call_id, p.agent,
         (SELECT array_agg(DISTINCT l.joined_at - mod(l.joined_at, 900000)
                           ORDER BY l.joined_at - mod(l.joined_at, 900000))
                   FILTER (WHERE l.agent = p.agent AND l.role = 'agent')
          FROM call_legs l WHERE l.call_id = p.call_id)
  FROM (SELECT DISTINCT u.call_id, u.agent FROM unnest(p_call, p_agent) AS u(call_id, agent)) p
$$;

-- A pair whose kept quarters differ from its legs' (before: kept, after: fresh).
CREATE TYPE handled_move AS (call_id text, agent text, before bigint[], after bigint[]);

CREATE FUNCTION handled_moves(p_call text[], p_agent text[]) RETURNS handled_move[]
LANGUAGE sql STABLE AS $$
  SELECT array_agg(ROW(f.call_id, f.agent, k.quarters, f.quarters)::handled_move)
  FROM handled_fresh(p_call, p_agent) f
  LEFT JOIN LATERAL (SELECT k.quarters FROM handled_pairs k
                     WHERE k.call_id = f.call_id AND k.agent = f.agent) k ON true
  WHERE k.quarters IS DISTINCT FROM f.quarters
$$;

-- Bring the kept pairs of (call, agent) and their totals up to the stored legs.
CREATE FUNCTION handled_recount(p_call text[], p_agent text[]) RETURNS void
LANGUAGE plpgsql SET jit = off AS $$
DECLARE
  moved handled_move[];
BEGIN
  IF handled_moves(p_call, p_agent) IS NULL THEN
    RETURN;  -- as kept: a rewrite of the same legs
  END IF;
  PERFORM pg_advisory_xact_lock(22338, 0);  -- the calls' totals (0003)
  -- from here each statement sees every change committed before the lock was granted
  moved := handled_moves(p_call, p_agent);

  INSERT INTO handled_quarters AS t (quarter, agent, pairs)
  SELECT q.quarter, m.agent, sum(q.sign)
  FROM unnest(moved) AS m
  CROSS JOIN LATERAL (SELECT b, -1 FROM unnest(m.before) AS b
                      UNION ALL SELECT a, 1 FROM unnest(m.after) AS a) AS q(quarter, sign)
  GROUP BY 1, 2 HAVING sum(q.sign) <> 0 ORDER BY 1, 2
  ON CONFLICT (quarter, agent) DO UPDATE SET pairs = t.pairs + EXCLUDED.pairs;

  INSERT INTO handled_days AS t (day, agent, pairs)
  SELECT d.day, m.agent, sum(d.sign)
  FROM unnest(moved) AS m
  CROSS JOIN LATERAL (SELECT DISTINCT b - mod(b, 86400000), -1 FROM unnest(m.before) AS b
                      UNION ALL
                      SELECT DISTINCT a - mod(a, 86400000), 1 FROM unnest(m.after) AS a)
    AS d(day, sign)
  GROUP BY 1, 2 HAVING sum(d.sign) <> 0 ORDER BY 1, 2
  ON CONFLICT (day, agent) DO UPDATE SET pairs = t.pairs + EXCLUDED.pairs;

  DELETE FROM handled_spread s
  WHERE (s.quarter, s.agent, s.call_id) IN (
    SELECT b, m.agent, m.call_id FROM unnest(moved) AS m, unnest(m.before) AS b
    WHERE cardinality(m.before) > 1);
  INSERT INTO handled_spread (quarter, agent, call_id)
  SELECT a, m.agent, m.call_id FROM unnest(moved) AS m, unnest(m.after) AS a
  WHERE cardinality(m.after) > 1;

  DELETE FROM handled_pairs k
  WHERE (k.call_id, k.agent) IN (
    SELECT m.call_id, m.agent FROM unnest(moved) AS m WHERE m.after IS NULL);
  INSERT INTO handled_pairs AS k (call_id, agent, quarters)
  SELECT m.call_id, m.agent, m.after FROM unnest(moved) AS m WHERE m.after IS NOT NULL
  ON CONFLICT (call_id, agent) DO UPDATE SET quarters = EXCLUDED.quarters;
END
$$;

-- The same for every agent of ``p_calls``' legs or kept pairs, 10,000 calls at a time.
CREATE FUNCTION handled_recount_calls(p_calls text[]) RETURNS void
LANGUAGE plpgsql SET jit = off AS $$
DECLARE
  ids text[] := ARRAY(SELECT DISTINCT c FROM unnest(p_calls) AS c ORDER BY c);
  chunk text[];
  at int := 1;
BEGIN
  WHILE at <= cardinality(ids) LOOP
    chunk := ids[at:at + 9999];
    PERFORM handled_recount(array_agg(p.call_id), array_agg(p.agent))
    FROM unnest(chunk) AS c(id)
    CROSS JOIN LATERAL (SELECT l.call_id, l.agent FROM call_legs l WHERE l.call_id = c.id
                        UNION
                        SELECT k.call_id, k.agent FROM handled_pairs k WHERE k.call_id = c.id) p;
    at := at + 10000;
  END LOOP;
END
$$;

-- The calls whose legs this transaction changed, recounted at its commit (below);
-- empty outside such a transaction.
CREATE TABLE handled_dirty (call_id text PRIMARY KEY);

CREATE FUNCTION handled_after_legs_change() RETURNS trigger LANGUAGE plpgsql SET jit = off AS $$
BEGIN
  IF TG_OP IN ('DELETE', 'UPDATE') THEN
    INSERT INTO handled_dirty SELECT DISTINCT call_id FROM old_legs ON CONFLICT DO NOTHING;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO handled_dirty SELECT DISTINCT call_id FROM new_legs ON CONFLICT DO NOTHING;
  END IF;
  PERFORM set_config('warmline.handled_dirty', 'yes', true);
  RETURN NULL;
END
$$;

-- Deferred, once per dirty call; the first at commit recounts them all, the others
-- find nothing left to do.
CREATE FUNCTION handled_flush() RETURNS trigger LANGUAGE plpgsql SET jit = off AS $$
DECLARE
  ids text[];
BEGIN
  IF current_setting('warmline.handled_dirty', true) IS DISTINCT FROM 'yes' THEN
    RETURN NULL;
  END IF;
  PERFORM set_config('warmline.handled_dirty', 'no', true);
  WITH gone AS (DELETE FROM handled_dirty RETURNING call_id)
  SELECT array_agg(call_id) INTO ids FROM gone;
  IF ids IS NOT NULL THEN
    PERFORM handled_recount_calls(ids);
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER call_legs_handled_insert AFTER INSERT ON call_legs
  REFERENCING NEW TABLE AS new_legs
  FOR EACH STATEMENT EXECUTE FUNCTION handled_after_legs_change();
CREATE TRIGGER call_legs_handled_update AFTER UPDATE ON call_legs
  REFERENCING OLD TABLE AS old_legs NEW TABLE AS new_legs
  FOR EACH STATEMENT EXECUTE FUNCTION handled_after_legs_change();
CREATE TRIGGER call_legs_handled_delete AFTER DELETE ON call_legs
  REFERENCING OLD TABLE AS old_legs
  FOR EACH STATEMENT EXECUTE FUNCTION handled_after_legs_change();
-- At commit: by then a call's legs are as its writer left them.
CREATE CONSTRAINT TRIGGER handled_dirty_flush AFTER INSERT ON handled_dirty
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION handled_flush();

-- the legs already stored
SELECT handled_recount_calls(array_agg(DISTINCT call_id)) FROM call_legs WHERE role = 'agent';
