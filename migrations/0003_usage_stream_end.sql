-- How a streamed answer ended (clean, provider_error, cut, silent, client_gone); NULL for a
-- whole (non-streamed) answer. A stream that ended early is settled by the documented rule
-- (its worst case), and its usage row says so.
ALTER TABLE usage_events ADD COLUMN stream_end TEXT;
