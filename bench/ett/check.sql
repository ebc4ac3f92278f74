-- The harness check of the protocol: the repeat-last forecast in mode M (all
-- seven columns), H = 96, every test window scored, standardized with the
-- train rows, scores MSE 1.294 and MAE 0.713. It runs tst.evaluate without a
-- model, so it checks the split, the scaling and the window bounds of the
-- same call that scores every cell.
\set ON_ERROR_STOP 1
\set QUIET 1
SET TimeZone = 'UTC';
\pset format unaligned
\pset tuples_only on

SELECT e.windows, e.mse, e.mae
FROM ett_split s,
	 tst.evaluate(NULL, 'SELECT col, ts, value FROM ett_long', 'ts', 'value', 'col', 96,
				  jsonb_build_object('test_start', s.test_start, 'test_end', s.test_end,
									 'scaling', 'standard',
									 'train_start', s.train_start, 'train_end', s.train_end)) AS e
WHERE e.series IS NULL AND e.method = 'repeat_last'
\gset check_
SELECT format('metric check_windows %s', :check_windows);
SELECT format('metric check_mse %s', round(:check_mse::numeric, 4));
SELECT format('metric check_mae %s', round(:check_mae::numeric, 4));
SELECT CASE WHEN round(:check_mse::numeric, 3) = 1.294 AND round(:check_mae::numeric, 3) = 0.713
				 AND :check_windows = 7 * 2785
			THEN 'ok - harness repeat-last mode M H 96'
			ELSE format('not ok - harness repeat-last mode M H 96: MSE %s, MAE %s over %s windows, expected 1.294 and 0.713 over %s',
						round(:check_mse::numeric, 4), round(:check_mae::numeric, 4),
						:check_windows, 7 * 2785)
	   END;
