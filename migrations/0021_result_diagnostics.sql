-- The trust report of each result: {reliability: ok | caution | unreliable, reasons: [...]}.
-- NULL for results computed before estimators reported one.
ALTER TABLE results ADD COLUMN diagnostics jsonb;
