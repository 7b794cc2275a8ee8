-- An archived answer's request id is looked up in usage_events once the archive row is gone
-- (past 30 days, deleted by the cron): the owner then still gets 410, not 404.
CREATE INDEX usage_events_by_request ON usage_events(request_id);
