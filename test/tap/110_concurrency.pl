# Durability and concurrency of tst.models:
#  - sessions that train one model name at once all succeed with distinct
#    versions, and every stored version loads and forecasts;
#  - a statement that forecasts while another session commits a new version
#    uses one version for all its rows;
#  - a backend killed with SIGKILL during tst.train leaves no model row after
#    crash recovery, wherever it was killed;
#  - REFRESH MATERIALIZED VIEW CONCURRENTLY on a forecast view runs while
#    other sessions read the view and forecast.
# No time is asserted. Locks, not sleeps, make the statements overlap.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my $node = PostgreSQL::Test::Cluster->new('concurrency');
$node->init;
# Without hash aggregation, GROUP BY sorts and tst.forecast_agg finalizes
# each group as soon as its rows are in, so its forecasts spread over time.
$node->append_conf('postgresql.conf',
	"max_parallel_workers_per_gather = 0\nenable_hashagg = off\nrestart_after_crash = on\n");
$node->start;

# Six hourly series of 300 points, their tst.series, and a small model config.
$node->safe_psql('postgres', q{
CREATE EXTENSION tst;
CREATE EXTENSION amcheck;
CREATE TABLE readings AS
SELECT 's' || s AS series, timestamptz '2024-01-01 00:00+00' + h * interval '1 hour' AS ts,
       s + sin(h * 2 * pi() / 24) + 0.01 * ((h * 7 + s) % 11) AS value
FROM generate_series(1, 6) AS s, generate_series(0, 299) AS h;
CREATE TABLE hist AS
SELECT row_number() OVER (ORDER BY series) AS id, series, tst.series_agg(ts, value) AS h
FROM readings GROUP BY series;
});

# A model that trains in about a second; $seed makes versions differ.
sub train_sql
{
	my ($name, $seed, $epochs) = @_;
	$epochs //= 2;
	return qq{SET client_min_messages = warning;
SELECT tst.train('$name', 'public.readings', 'ts', 'value', 'series', 6,
  '{"context": 48, "patch_len": 8, "patch_stride": 8, "d_model": 8, "n_heads": 2,
    "n_layers": 1, "d_ff": 16, "epochs": $epochs, "patience": 10000, "seed": $seed,
    "max_windows_per_epoch": 256}')};
}

# Start psql -c $sql in the background; returns the harness and its output buffers.
sub start_psql
{
	my ($sql) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', $sql ],
		'>', \$out, '2>', \$err);
	return ($h, \$out, \$err);
}

# Wait until $count active queries contain $pattern; returns their pids.
sub wait_active
{
	my ($pattern, $count, $extra) = @_;
	$extra //= '';
	$pattern =~ s/'/''/g;
	for (my $i = 0; $i < 1200; $i++)
	{
		my $pids = $node->safe_psql('postgres', qq{
			SELECT string_agg(pid::text, ' ' ORDER BY pid) FROM pg_stat_activity
			WHERE state = 'active' AND query LIKE '%$pattern%' AND pid <> pg_backend_pid() $extra});
		my @pids = split ' ', $pids;
		return @pids if @pids >= $count;
		sleep(0.05);
	}
	die "$count queries with $pattern did not start";
}

# Holds the advisory lock that tst.train takes on a name before its INSERT.
my $lock_sql = q{SELECT pg_advisory_xact_lock(hashtext('tst.models'), hashtext('%s'))};

# Every version of $name forecasts the full horizon from every history.
sub all_versions_forecast
{
	my ($name) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT string_agg(m.version || ':' || n, ' ' ORDER BY m.version)
		FROM tst.models m,
		     LATERAL (SELECT count(*) AS n FROM hist, tst.forecast('$name\@' || m.version, hist.h) f) c
		WHERE m.name = '$name'});
}

#
# 1. Concurrent training of one name.
#
{
	# Three sessions start training at once.
	my @runs = map { [ start_psql(train_sql('race', $_)) ] } 1 .. 3;
	my @versions;
	foreach my $run (@runs)
	{
		my ($h, $out, $err) = @$run;
		$h->finish;
		is($h->result(0), 0, 'concurrent train: session succeeded') or diag($$err);
		chomp(my $v = $$out);
		push @versions, $v;
	}
	is(join(' ', sort @versions), '1 2 3', 'concurrent train: three distinct versions');

	# Two sessions that finished training wait for the name's lock, so both
	# reach the INSERT at the same instant once it is released.
	my $holder = $node->background_psql('postgres');
	$holder->query_safe('BEGIN');
	$holder->query_safe(sprintf($lock_sql, 'race'));
	my @blocked = map { [ start_psql(train_sql('race', 10 + $_)) ] } 1 .. 2;
	wait_active("tst.train('race'", 2, "AND wait_event = 'advisory'");
	pass('concurrent train: both sessions wait on the name lock');
	$holder->query_safe('COMMIT');
	$holder->quit;
	@versions = ();
	foreach my $run (@blocked)
	{
		my ($h, $out, $err) = @$run;
		$h->finish;
		is($h->result(0), 0, 'contended insert: session succeeded') or diag($$err);
		chomp(my $v = $$out);
		push @versions, $v;
	}
	is(join(' ', sort @versions), '4 5', 'contended insert: distinct versions 4 and 5');

	is(all_versions_forecast('race'), '1:36 2:36 3:36 4:36 5:36',
		'concurrent train: every version loads and forecasts 6 series x 6 steps');
	is($node->safe_psql('postgres',
		q{SELECT count(DISTINCT octet_length(weights)) || ' ' || count(*) FROM tst.models WHERE name = 'race'}),
		'1 5', 'concurrent train: all five rows have full-size weights');
}

#
# 2. Forecasting while another session commits a new version.
#
{
	$node->safe_psql('postgres', train_sql('mix', 1));

	# Three statements that forecast many times: a series of tst.forecast
	# calls, tst.forecast_agg over sorted groups (each group is finished as
	# soon as its rows are in), and tst.forecast_table. In the run that
	# overlaps the commit, one row half way through each statement waits for
	# the writer's transaction lock, so the commit lands mid-statement.
	# The first placeholder is that row's condition, the second the model.
	my %statements = (
		forecast_series => q{SELECT i, f.step, f.forecast
			FROM generate_series(1, 30) AS i
			CROSS JOIN LATERAL (SELECT h FROM hist WHERE id = 1 + i %% 6 AND (i <> 15 OR %s)) AS s
			CROSS JOIN LATERAL tst.forecast(CASE WHEN i > 0 THEN '%s' END, s.h) AS f
			ORDER BY i, f.step},
		forecast_agg => q{SELECT series,
			tst.forecast_agg(CASE WHEN series <> 's4' OR ts <> '2024-01-01 00:00+00' OR %s THEN '%s' END, ts, value)
			FROM readings GROUP BY series ORDER BY series},
		forecast_table => q{SELECT series, step, forecast FROM tst.forecast_table('%2$s',
			'SELECT series, ts, value FROM public.readings
			 WHERE series <> ''s4'' OR ts <> ''2024-01-01 00:00+00'' OR %1$s',
			'ts', 'value', 'series') ORDER BY series, step},
	);
	my $wait = 'pg_advisory_xact_lock_shared(4242) IS NOT NULL';

	my %v1 = map { $_ => $node->safe_psql('postgres', sprintf($statements{$_}, 'true', 'mix@1')) } keys %statements;

	# The writer trains version 2 in a transaction that holds lock 4242; the
	# statements start and wait for that lock; the writer commits.
	my $writer = $node->background_psql('postgres');
	$writer->query_safe('BEGIN');
	$writer->query_safe('SELECT pg_advisory_xact_lock(4242)');
	is($writer->query_safe(train_sql('mix', 2)), '2', 'forecast during write: version 2 trained');
	my %runs = map { $_ => [ start_psql(sprintf($statements{$_}, $wait, 'mix')) ] } keys %statements;
	my @waiting = wait_active('pg_advisory_xact_lock_shared(4242)', 3, "AND wait_event = 'advisory'");
	is(scalar(@waiting), 3, 'forecast during write: all three statements wait for the commit');
	$writer->query_safe('COMMIT');
	$writer->quit;

	my %v2 = map { $_ => $node->safe_psql('postgres', sprintf($statements{$_}, 'true', 'mix@2')) } keys %statements;
	foreach my $name (sort keys %statements)
	{
		my ($h, $out, $err) = @{ $runs{$name} };
		$h->finish;
		is($h->result(0), 0, "$name: statement succeeded") or diag($$err);
		chomp(my $got = $$out);
		isnt($v1{$name}, $v2{$name}, "$name: versions 1 and 2 forecast differently");
		ok($got eq $v1{$name} || $got eq $v2{$name}, "$name: every row from one version");
		diag("$name during the commit used version " . ($got eq $v1{$name} ? 1 : $got eq $v2{$name} ? 2 : 'mixed'));

		my $after = $node->safe_psql('postgres', sprintf($statements{$name}, 'true', 'mix'));
		is($after, $v2{$name}, "$name: the next statement uses version 2");
	}
}

#
# 3. REFRESH MATERIALIZED VIEW CONCURRENTLY while forecasts are read.
#
{
	$node->safe_psql('postgres', q{
		CREATE MATERIALIZED VIEW mix_forecast AS
		SELECT series, step, ts, forecast, lower_bound, upper_bound
		FROM tst.forecast_table('mix', 'public.readings', 'ts', 'value', 'series');
		CREATE UNIQUE INDEX ON mix_forecast (series, step);
	});

	# A reader that reads the view and forecasts 200 times in one session,
	# with a pause of 20 ms each time so that it outlasts a few refreshes.
	my $reader_sql = join('', map {
		"SELECT count(*) || ' ' || count(DISTINCT series) FROM mix_forecast;\n"
		  . "SELECT count(*) FROM hist, tst.forecast('mix', hist.h), pg_sleep(0.02) AS pause;\n" } 1 .. 200);
	my ($out, $err) = ('', '');
	my $reader = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres') ],
		'<', \$reader_sql, '>', \$out, '2>', \$err);

	# Refresh while the reader runs, with a new version before every other
	# refresh so that the view's contents change.
	my ($refreshes, $during) = (0, 0);
	my $seed = 100;
	while ($refreshes < 20)
	{
		$node->safe_psql('postgres', train_sql('mix', $seed++, 1)) if $refreshes % 2 == 0;
		$node->safe_psql('postgres', 'REFRESH MATERIALIZED VIEW CONCURRENTLY mix_forecast');
		$refreshes++;
		$reader->pump_nb;
		last unless $reader->pumpable;
		$during++;
	}
	$reader->finish;
	is($reader->result(0), 0, 'refresh concurrently: reader saw no error') or diag($err);
	cmp_ok($during, '>=', 1, 'refresh concurrently: refreshes ran while the reader read');
	my @lines = split /\n/, $out;
	is(scalar(@lines), 400, 'refresh concurrently: reader ran 400 statements');
	is(scalar(grep { $_ ne '36 6' && $_ ne '36' } @lines), 0,
		'refresh concurrently: every read saw 6 complete series');
	diag("$during of $refreshes refreshes ran while the reader read");

	is($node->safe_psql('postgres', 'SELECT * FROM mix_forecast ORDER BY series, step'),
		$node->safe_psql('postgres', q{SELECT * FROM tst.forecast_table('mix', 'public.readings', 'ts', 'value', 'series') ORDER BY series, step}),
		'refresh concurrently: the view holds the latest version\'s forecasts');
}

#
# 4. SIGKILL during tst.train: no model row after crash recovery.
#
# Killing one backend makes the postmaster end every session and recover.
sub kill_and_recover
{
	my ($pid, $what) = @_;
	my $log_offset = -s $node->logfile;
	kill 'KILL', $pid;
	$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
	$node->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()')
	  or die "server did not recover after killing $what";
	is($node->safe_psql('postgres', q{SELECT count(*) FROM tst.models WHERE name = 'killed'}),
		'0', "SIGKILL $what: no model row after recovery");
}

{
	my $before = $node->safe_psql('postgres', 'SELECT count(*) FROM tst.models');

	# (a) During the epochs of a long training.
	my ($h) = start_psql(train_sql('killed', 1, 10000));
	my ($pid) = wait_active("tst.train('killed'", 1);
	sleep(1);
	kill_and_recover($pid, 'during epochs');
	$h->finish;

	# (b) After training, while it waits for the name's lock before the INSERT.
	my $holder = $node->background_psql('postgres', on_error_stop => 0);
	$holder->query_safe('BEGIN');
	$holder->query_safe(sprintf($lock_sql, 'killed'));
	($h) = start_psql(train_sql('killed', 2));
	($pid) = wait_active("tst.train('killed'", 1, "AND wait_event = 'advisory'");
	kill_and_recover($pid, 'before the insert');
	$h->finish;
	eval { $holder->quit };

	# (c) After the INSERT, in a transaction that has not committed.
	my $session = $node->background_psql('postgres', on_error_stop => 0);
	$pid = $session->query_safe('SELECT pg_backend_pid()');
	$session->query_safe('BEGIN');
	is($session->query_safe(train_sql('killed', 3)), '1', 'SIGKILL after insert: row inserted');
	kill_and_recover($pid, 'after the insert, before commit');
	eval { $session->quit };

	is($node->safe_psql('postgres', 'SELECT count(*) FROM tst.models'), $before,
		'SIGKILL: the other models are all still there');
	is($node->safe_psql('postgres', q{SELECT bt_index_check('tst.models_pkey', true)}), '',
		'SIGKILL: the primary key index matches the table');
	is(all_versions_forecast('race'), '1:36 2:36 3:36 4:36 5:36',
		'SIGKILL: every stored version still forecasts');
	is($node->safe_psql('postgres', train_sql('killed', 4)), '1',
		'SIGKILL: training the name again gives version 1');
}

$node->stop;
done_testing();
